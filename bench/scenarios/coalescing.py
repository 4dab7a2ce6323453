"""Scenario 5: repeated updates of the same rows (does the replica coalesce them?).

``rows`` rows are created and replicated; then the master saves each of them ``rounds`` times,
every save in its own transaction (``rows * rounds`` events, ``rounds`` revisions per row). Reports
end-to-end events/s, the master's save rate, and the replica's row writes for those events (from
the ``bench_writes`` trigger column): fewer writes than events means updates were coalesced.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.common import MasterProbe, Resources, Session, Stack, wait_converged


def measure(res: Resources, stack: Stack, session: Session, rows: int, rounds: int) -> dict[str, Any]:
    master = stack.master
    assert master is not None
    res.reset(stack)
    ids = master.call('create_ids', model='bench', n=rows, tag='co')
    before = wait_converged(stack.master_db, stack.replica_db, timeout=120, alive=session.alive)
    session.sampler.window_start()
    probe = MasterProbe(master.pid)
    run = master.call('update_rounds', ids=ids, rounds=rounds)
    master_stats = probe.end()
    conv = wait_converged(
        stack.master_db, stack.replica_db, timeout=max(60.0, run['n'] / 40), alive=session.alive
    )
    consumer = session.sampler.window_end()
    n = run['n']
    writes = conv.writes - before.writes
    return {
        'events': n,
        'master_rate': n / (run['t_end'] - run['t_start']),
        'e2e_rate': n / (conv.last_applied - run['t_start']),
        'replica_writes': writes,
        'events_per_write': n / writes if writes else None,
        'consumer_cpu_ms_per_event': 1000 * consumer['cpu_s'] / n,
        **consumer,
        **master_stats,
    }
