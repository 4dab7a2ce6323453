"""Scenario 7: ``manage.py cqrs_sync --cqrs-id=bench -f={}`` until the replica has every row.

The master table is filled in SQL (no events), the replica is empty and its consumer running. The
command runs inside the warm master agent (``call_command``; no Django start-up in the figure).
Rows/s = rows / (last replica apply - command start); the command's own rate is kept too.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.common import MasterProbe, Resources, Session, Stack, fill_master, wait_converged

COMMAND = 'cqrs_sync'


def measure(res: Resources, stack: Stack, session: Session, rows: int) -> dict[str, Any]:
    master = stack.master
    assert master is not None
    if not master.call('has_command', name=COMMAND):
        return {'missing': f'{COMMAND} is not a command of this package'}
    res.reset(stack)
    fill_master(stack.master_db, rows)
    session.sampler.window_start()
    probe = MasterProbe(master.pid)
    run = master.call('call', name=COMMAND, args=['--cqrs-id=bench', '--filter={}'])
    master_stats = probe.end()
    conv = wait_converged(
        stack.master_db, stack.replica_db, timeout=max(60.0, rows / 40), alive=session.alive
    )
    consumer = session.sampler.window_end()
    return {
        'rows': rows,
        'rate': rows / (conv.last_applied - run['t_start']),
        'command_rate': rows / run['elapsed'],
        **consumer,
        **master_stats,
    }
