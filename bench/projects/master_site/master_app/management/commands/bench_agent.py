from bench_common import agent_command

from master_app.ops import HANDLERS

Command = agent_command(HANDLERS)
