from e2e_common import agent_command

from master_app.e2e_ops import HANDLERS

Command = agent_command(HANDLERS)
