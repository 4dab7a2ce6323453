"""Scenario 2: end-to-end throughput, one master process saving as fast as it can.

The consumer (``cqrs_consume -w N``) is running and warmed up before the master starts. The master
saves new rows for ``duration`` seconds (at most ``cap`` rows), one per transaction or 100 per
transaction. End to end = rows / (last replica apply - master start); the master's own save rate
= rows / its own elapsed time, in the same run.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.common import MasterProbe, Resources, Session, Stack, wait_converged


def warm_up(res: Resources, stack: Stack, session: Session, rows: int = 200) -> None:
    """A few hundred events through the running consumer, then empty tables."""
    assert stack.master is not None
    res.reset(stack)
    stack.master.call('create_ids', model='bench', n=rows, tag='warm')
    wait_converged(stack.master_db, stack.replica_db, timeout=120, alive=session.alive)
    res.reset(stack)


def measure(
    res: Resources, stack: Stack, session: Session, rows_per_txn: int, duration: float, cap: int
) -> dict[str, Any]:
    master = stack.master
    assert master is not None
    res.reset(stack)
    session.sampler.window_start()
    probe = MasterProbe(master.pid)
    run = master.call('run_for', duration=duration, rows_per_txn=rows_per_txn, max_rows=cap)
    master_stats = probe.end()
    conv = wait_converged(
        stack.master_db, stack.replica_db, timeout=max(60.0, run['n'] / 40), alive=session.alive
    )
    consumer = session.sampler.window_end()
    n = run['n']
    e2e = n / (conv.last_applied - run['t_start'])
    master_rate = n / (run['t_end'] - run['t_start'])
    return {
        'events': n,
        'master_rate': master_rate,
        'e2e_rate': e2e,
        'e2e_over_master': e2e / master_rate,
        'lag_after_master_s': conv.last_applied - run['t_end'],
        'consumer_cpu_ms_per_event': 1000 * consumer['cpu_s'] / n,
        'master_cpu_ms_per_event': 1000 * master_stats['master_cpu_s'] / n,
        **consumer,
        **master_stats,
    }
