"""Scenario 3: draining a pre-filled queue with one worker; and the raw consume/upsert ceilings.

``n`` master rows are written in SQL and one SAVE event per row, in the wire format a master
sends, is published (raw pika) while no consumer runs; every event lands in one queue per consumer
under test (all bound to one exchange on vhost '/', since the upstream transport ignores vhosts),
so every consumer drains the very same messages. Then, one at a time: ``cqrs_consume -w 1`` of
each package with CONN_MAX_AGE 0 and 60, and the raw pika + batched-upsert consumer. Drain rate
= events applied / (last apply - first apply); the consumer's start-up (spawn to first apply) is
reported apart, with the rate including it.

Every consumer drains until the queue is empty or for at most ``window`` seconds after its first
apply, whichever comes first (the same rule for all). Ours drains 10,000 events well within the
window; upstream, which applies one event per transaction at a constant cost, is measured over the
window instead of for the minutes a full drain takes it, and the rows it applied must equal the
master's rows.
"""

from __future__ import annotations

import time
from typing import Any

from bench.scenarios.common import (
    COLUMNS,
    MASTER_TABLE,
    PLAIN_TABLE,
    REPLICA_TABLE,
    BenchError,
    Converged,
    Namespace,
    Resources,
    Session,
    Stack,
    compare,
    fill_master,
    pg,
    run_raw,
    truncate,
    wait_converged,
)

VARIANTS = (('ours', 0), ('upstream', 0), ('ours', 60), ('upstream', 60))


def queue_names(ns: Namespace) -> dict[str, str]:
    names = {f'{rt}_{cma}': f'{ns.token}_drain_{rt}_{cma}' for rt, cma in VARIANTS}
    names['raw'] = f'{ns.token}_drain_raw'
    return names


def prefill(res: Resources, ours: Stack, n: int) -> dict[str, Any]:
    """``n`` master rows (SQL) and one SAVE event per row in every drain queue.

    The events are published by raw pika in the wire format a master sends (UPSTREAM_SPEC §5.1),
    so every consumer under test drains byte-identical messages that neither package produced.
    """
    ns = res.shared_namespace()
    queues = queue_names(ns)
    for name in queues.values():
        ns.declare_queue(name)
        ns.purge(name)
    truncate(ours.master_db, MASTER_TABLE, PLAIN_TABLE)
    fill_master(ours.master_db, n)
    run = run_raw(
        'prefill', vhost='/', exchange=ns.exchange, db=ours.master_db, queues=list(queues.values()), n=n
    )
    if any(d != n for d in run['depths']):
        raise BenchError(f'prefill: queue depths {run["depths"]}, expected {n} each')
    return {'prefill_rate': n / run['elapsed'], 'queues': queues}


def _wait_first_row(db: str, session: Session, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with pg(db) as conn:
        while not conn.execute(f'SELECT EXISTS (SELECT 1 FROM {REPLICA_TABLE})').fetchone()[0]:
            session.alive()
            if time.monotonic() > deadline:
                raise BenchError(f'no event applied within {timeout} s')
            time.sleep(0.01)


def _count(db: str) -> int:
    with pg(db) as conn:
        return int(conn.execute(f'SELECT count(*) FROM {REPLICA_TABLE}').fetchone()[0])


def _applied_so_far(master_db: str, replica_db: str) -> Converged:
    """The rows applied when a drain was cut off at its window: each must equal the master's row."""
    with pg(master_db) as conn:
        want = {r[0]: r for r in conn.execute(f'SELECT {COLUMNS} FROM {MASTER_TABLE}').fetchall()}
    with pg(replica_db) as conn:
        got = conn.execute(f'SELECT {COLUMNS} FROM {REPLICA_TABLE}').fetchall()
        first, last, writes = conn.execute(
            f'SELECT extract(epoch FROM min(bench_applied_at)), extract(epoch FROM max(bench_applied_at)), '
            f'coalesce(sum(bench_writes), 0) FROM {REPLICA_TABLE}'
        ).fetchone()
    bad = [row for row in got if want.get(row[0]) != row]
    if bad:
        raise BenchError(f'{len(bad)} applied row(s) differ from the master; first: {bad[0]!r}')
    return Converged(float(first), float(last), int(writes), 0.0)


def drain_one(
    res: Resources,
    stack: Stack,
    master_db: str,
    queue: str,
    n: int,
    conn_max_age: int,
    window: float,
) -> dict[str, Any]:
    truncate(stack.replica_db, REPLICA_TABLE)
    with pg(stack.replica_db) as conn:
        if conn.execute("SELECT to_regclass('dj_cqrs_replica_tombstone')").fetchone()[0]:
            conn.execute('TRUNCATE dj_cqrs_replica_tombstone')
    ns = res.shared_namespace()
    with stack.consuming(
        1, ns=ns, queue_name=queue, conn_max_age=conn_max_age, wait=False, label=f'drain-{conn_max_age}'
    ) as session:
        _wait_first_row(stack.replica_db, session)
        session.sampler.mark()
        cut_off = time.monotonic() + window
        while _count(stack.replica_db) < n and time.monotonic() < cut_off:
            session.alive()
            time.sleep(0.05)
        complete = _count(stack.replica_db) >= n
        if complete:
            conv = wait_converged(master_db, stack.replica_db, timeout=120, settle=20, alive=session.alive)
        consumer = session.sampler.window_end()
    # (Cut off: the consumer is stopped before the applied rows are counted and checked.)
    applied = n if complete else _count(stack.replica_db)
    if not complete:
        conv = _applied_so_far(master_db, stack.replica_db)
    return {
        'events': applied,
        'complete': complete,
        'rate': applied / (conv.last_applied - conv.first_applied),
        'rate_incl_startup': applied / (conv.last_applied - session.t_spawn),
        'startup_s': conv.first_applied - session.t_spawn,
        'replica_writes': conv.writes,
        'left_in_queue': ns.depth(queue),
        'consumer_cpu_ms_per_event': (
            None if consumer['cpu_s_after_mark'] is None else 1000 * consumer['cpu_s_after_mark'] / applied
        ),
        **consumer,
    }


def drain_raw(res: Resources, master_db: str, queue: str, n: int) -> dict[str, Any]:
    db = res.raw_db()
    truncate(db, REPLICA_TABLE)
    raw = run_raw('consume', vhost='/', queue=queue, db=db, n=n)
    conv = wait_converged(master_db, db, timeout=60)
    return {
        'events': n,
        'rate': n / (conv.last_applied - conv.first_applied),
        'batches': raw['batches'],
        'cpu_ms_per_event': 1000 * raw['cpu_s'] / n,
        'peak_rss_mb': raw['peak_rss_mb'],
    }


def upsert_raw(res: Resources, master_db: str) -> dict[str, Any]:
    db = res.raw_db()
    raw = run_raw('upsert', db=db, source_db=master_db)
    problem = compare(master_db, db)
    if problem is not None:
        raise BenchError(f'raw upsert: replica differs: {problem}')
    return {'events': raw['n'], 'rate': raw['rate']}
