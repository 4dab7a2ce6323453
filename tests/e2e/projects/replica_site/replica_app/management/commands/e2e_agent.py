from e2e_common import agent_command

from replica_app.e2e_ops import HANDLERS

Command = agent_command(HANDLERS)
