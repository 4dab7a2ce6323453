from bench_common import agent_command

Command = agent_command({})
