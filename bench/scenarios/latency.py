"""Scenario 4: commit -> replica-applied latency at a fixed write rate.

The master commits one new row per transaction at ``rate`` writes/s for ``duration`` s and records
each commit's time (an on-commit callback registered before the save, so it runs before the
package's own publish callback). A deferred constraint trigger on the replica table logs each row
write at the replica's COMMIT. Latency = replica commit - master commit, per event.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.common import (
    MasterProbe,
    Resources,
    Session,
    Stack,
    drop_commit_log,
    install_commit_log,
    pg,
    wait_converged,
)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float('nan')
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def measure(res: Resources, stack: Stack, session: Session, rate: float, duration: float) -> dict[str, Any]:
    master = stack.master
    assert master is not None
    res.reset(stack)
    install_commit_log(stack.replica_db)
    try:
        session.sampler.window_start()
        probe = MasterProbe(master.pid)
        run = master.call('paced', rate=rate, duration=duration, timeout=duration + 120)
        master_stats = probe.end()
        wait_converged(stack.master_db, stack.replica_db, timeout=120, alive=session.alive)
        consumer = session.sampler.window_end()
        with pg(stack.replica_db) as conn:
            applied = {
                int(i): float(at)
                for i, at in conn.execute(
                    'SELECT id, extract(epoch FROM min(at)) FROM bench_commit_log GROUP BY id'
                ).fetchall()
            }
    finally:
        drop_commit_log(stack.replica_db)
    lat = sorted(1000 * (applied[pk] - t_commit) for pk, t_commit in run['commits'])
    return {
        'events': run['n'],
        'p50_ms': percentile(lat, 50),
        'p95_ms': percentile(lat, 95),
        'p99_ms': percentile(lat, 99),
        'max_ms': lat[-1],
        'master_max_behind_ms': 1000 * run['max_behind'],
        **consumer,
        **master_stats,
    }
