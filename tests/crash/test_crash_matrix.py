"""The crash matrix: faults between a master's commit and a replica's row, in both outbox modes.

Each case drives real processes (tests/crash/stack.py) and ends with the same checks:

* with the outbox on (``outbox``): the replica equals the master row by row (pk, every column,
  revision) on the case's rows and on the whole table, nothing is left in the outbox, zero lost;
* in both modes: no replica revision ever went backwards and no deleted row came back, as seen by
  a sampler polling the replica while the case runs;
* with the outbox off (``no-outbox``, upstream behaviour: a failed publish is logged and dropped)
  losses are expected: they are measured, printed and kept in the report, never a failure.

Every case prints its counts (events written, published, failed publishes, duplicates and stale
events the replica skipped, rows lost); the session prints the whole matrix (conftest.py).
Reproduce: ``.venv/bin/python -m pytest -q -s tests/crash -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from tests.crash import stack as crash
from tests.e2e import harness
from tests.support import services

pytestmark = pytest.mark.crash

M, F = crash.MASTER_MODEL, crash.FIELD


def check(case: crash.Case, report: crash.Report, outbox_matters: bool = True) -> None:
    """The common end of every case."""
    stack = case.stack
    assert not case.sampler.violations, (
        f'[{stack.mode}] replica went backwards: {case.sampler.violations[:10]}'
    )
    assert case.sampler.samples > 3, 'the revision sampler did not run'
    if stack.outbox:
        detail = case.describe_diff(case.diff_detail)
        assert report.lost == 0, f'{report.lost} row(s) lost with the outbox on:\n{detail}\n{report.line()}'
        assert report.outbox_left == 0, f'outbox not drained: {report.outbox_left} rows left'
        whole = crash.diff_rows(case.tables.rows('master'), case.tables.rows('replica'))
        assert not whole, f'whole table differs on {len(whole)} row(s):\n{case.describe_diff(whole)}'
        assert not [n for n in report.notes if 'outbox rows written' in n], report.notes
    else:
        # Upstream behaviour: what is lost is measured, not failed.
        assert 0 <= report.lost <= max(report.written, 1)
        if not outbox_matters:  # a replica-side case: no mode may lose anything
            assert report.lost == 0, report.line()


# --------------------------------------------------------------------------------------------
# 1. The master process SIGKILLed after commit and before publish


def test_master_killed_after_commit(case: crash.Case) -> None:
    """Two master processes are SIGKILLed by the test-only transport on their Nth produce call,
    i.e. after the commit and before the publish. The first one's event is delivered by
    ``cqrs_relay --once``, the second one's by the next master process's catch-up."""
    stack = case.stack
    count = 40
    written = 0

    # A: killed on the 60th produce (the 20th update); the relay delivers.
    killed_a = case.agent('master-a', CQRS_E2E_KILL_ON_PRODUCE=str(count + 20))
    with pytest.raises(harness.AgentError, match='exited'):
        killed_a.call('sequence', model=M, count=count, field=F, prefix='a', timeout=60)
    assert killed_a.proc.wait(10) == -9
    written += count + 20
    backlog_a = case.tables.outbox_backlog()
    assert case.relay_once() == 0, harness.tail(case.logs / 'relay-1.log')
    assert case.tables.outbox_backlog() == 0

    # B: killed on the 50th produce; the next master process's catch-up (rows older than the
    # fast path's grace period, checked after a successful publish) delivers, no relay.
    killed_b = case.agent('master-b', CQRS_E2E_KILL_ON_PRODUCE=str(count + 10))
    with pytest.raises(harness.AgentError, match='exited'):
        killed_b.call('sequence', model=M, count=count, field=F, prefix='b', timeout=60)
    assert killed_b.proc.wait(10) == -9
    written += count + 10
    backlog_b = case.tables.outbox_backlog()
    last_b = case.tables.sequence('dj_cqrs_outbox')

    def left_by_b() -> int:  # the follower's own rows come and go: only B's are awaited
        return int(
            case.tables.query('master', 'SELECT count(*) FROM dj_cqrs_outbox WHERE id <= %s', (last_b,))[0][0]
        )

    follower = case.agent('master-c')
    tick = follower.call('create', model=M, fields={F: 'tick-0'})
    written += 1
    deadline = time.monotonic() + 25
    ticks = 0
    while left_by_b() > 0 and time.monotonic() < deadline:
        time.sleep(1)
        ticks += 1
        follower.call('update', model=M, pk=tick['id'], fields={F: f'tick-{ticks}'})
        written += 1
    report = case.finish(written, killed=2)
    report.notes.append(
        f'outbox after kill A: {backlog_a} rows (relay), after kill B: {backlog_b} rows (catch-up '
        f'by the next process, {ticks} s)'
    )
    if stack.outbox:
        assert backlog_a >= 1 and backlog_b >= 1
    else:
        assert backlog_a == backlog_b == 0
    check(case, report)
    if not stack.outbox:
        assert report.lost == 2, report.line()  # exactly the two killed events


# --------------------------------------------------------------------------------------------
# 2. The broker unreachable for 30 s while the master keeps writing


def test_broker_unreachable_30s(case: crash.Case) -> None:
    stack = case.stack
    master = case.agent('master')
    load = crash.Background(
        lambda: master.call('load', model=M, field=F, duration=35, rate=60, pool=150, seed=2, timeout=120)
    )
    time.sleep(2)
    dropped = stack.master_proxy.cut()
    time.sleep(30)
    stack.master_proxy.restore()
    counts = load.join(60)
    backlog = case.tables.outbox_backlog()
    assert case.relay_once() == 0, harness.tail(case.logs / 'relay-1.log')
    report = case.finish(counts['writes'])
    report.notes.append(
        f'{counts["writes"]} writes in {counts["elapsed"]:.0f} s, {dropped} connection(s) cut, '
        f'outbox after the outage: {backlog} rows'
    )
    assert counts['errors'] == 0
    check(case, report)


# --------------------------------------------------------------------------------------------
# 3. The broker closing an idle producer connection; heartbeats missed on an idle connection


def test_idle_connection_closed_and_heartbeat(case: crash.Case) -> None:
    """heartbeat=2 in the URL. (a) Idle 5 s, then publish; (b) ``rabbitmqctl close_connection`` on
    the master's producer connection (this vhost only), then publish; (c) the link silently
    stalled for 7 s (heartbeats lost both ways, the broker drops the connection), then publish;
    (d) close_connection and a publish right behind it."""
    stack = case.stack
    master = case.agent('master', url_query='heartbeat=2')
    pks = [master.call('create', model=M, fields={F: f'idle{i}-0'})['id'] for i in range(5)]
    written = len(pks)
    step = 0

    def touch_all() -> None:
        nonlocal written, step
        step += 1
        for pk in pks:
            master.call('update', model=M, pk=pk, fields={F: f'{pk}-{step}'})
            written += 1

    time.sleep(5)  # (a) idle past the heartbeat
    touch_all()
    closed_b = services.close_rabbit_connections(stack.broker.vhost, 'dj_cqrs.producer')  # (b)
    time.sleep(1)
    touch_all()
    stack.master_proxy.stall()  # (c)
    time.sleep(7)
    stack.master_proxy.resume()
    touch_all()
    closed_d = services.close_rabbit_connections(stack.broker.vhost, 'dj_cqrs.producer')  # (d)
    touch_all()
    report = case.finish(written)
    report.notes.append(f'close_connection closed {closed_b} then {closed_d} producer connection(s)')
    assert closed_b >= 1
    check(case, report)


# --------------------------------------------------------------------------------------------
# 4. The consumer SIGKILLed in the middle of a batch of a few thousand events


def test_consumer_killed_mid_batch(case: crash.Case) -> None:
    stack = case.stack
    master = case.agent('master')
    rows = 1000
    created = master.call('bulk_create', model=M, rows=[{F: f'k{i}-0'} for i in range(rows)], timeout=120)
    pks = [r['id'] for r in created]
    written = rows

    def updates() -> int:
        for n in (1, 2):
            out = master.call('bulk_update', model=M, pks=pks, values={F: f'bulk-{n}'}, timeout=120)
            assert out['count'] == rows
        return 2 * rows

    load = crash.Background(updates)
    # SIGKILL once about a third of the 3000 events are applied.
    target = rows * 3 // 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        applied = sum(rev + 1 for rev in case.tables.revisions(case.start_pk).values())
        if applied >= target:
            break
        time.sleep(0.05)
    stack.kill_consumer()
    applied_at_kill = sum(rev + 1 for rev in case.tables.revisions(case.start_pk).values())
    queued_at_kill = stack.ready_messages()
    time.sleep(1)
    stack.start_consumer()
    written += load.join(120)
    report = case.finish(written)
    report.notes.append(
        f'consumer SIGKILLed with {applied_at_kill} of {written} events applied, {queued_at_kill} ready in the queue'
    )
    assert 0 < applied_at_kill < written
    check(case, report, outbox_matters=False)


# --------------------------------------------------------------------------------------------
# 5. Duplicated, reordered, save-after-delete and stale-sync deliveries injected on the wire


def _capture(
    stack: crash.Stack, exchange: str, queue: str, expected: int
) -> list[tuple[str, dict[str, Any]]]:
    conn = stack.broker.connection()
    try:
        ch = conn.channel()
        got: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + 20
        while len(got) < expected and time.monotonic() < deadline:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.1)
                continue
            got.append((method.routing_key, json.loads(body)))
        return got
    finally:
        conn.close()


def test_hostile_deliveries_on_the_wire(case: crash.Case) -> None:
    """The master publishes to a tap exchange nobody else consumes; the test captures its real
    events and republishes them to the replica's exchange duplicated, reversed, a SAVE after its
    DELETE, a SYNC older than the row, all mixed."""
    import pika

    stack = case.stack
    tap_exchange, tap_queue = f'{stack.broker.token}_tap', f'{stack.broker.token}_tap_q'
    conn = stack.broker.connection()
    ch = conn.channel()
    ch.exchange_declare(tap_exchange, 'topic', durable=True)
    ch.queue_declare(tap_queue, durable=True)
    ch.queue_bind(tap_queue, tap_exchange, routing_key='#')
    conn.close()

    master = case.agent('master-tap', CQRS_E2E_EXCHANGE=tap_exchange)
    written = 0

    def create(value: str) -> int:
        nonlocal written
        written += 1
        return master.call('create', model=M, fields={F: value})['id']

    def update(pk: int, value: str) -> None:
        nonlocal written
        written += 1
        master.call('update', model=M, pk=pk, fields={F: value})

    a = create('a0')  # A: revisions 0..4, delivered reversed, then some again
    for i in range(1, 5):
        update(a, f'a{i}')
    b = create('b0')  # B: revisions 0..2 then DELETE; the SAVEs delivered after the DELETE
    for i in range(1, 3):
        update(b, f'b{i}')
    master.call('delete', model=M, pk=b)
    written += 1
    c = create('c0')  # C: a SYNC at revision 1, delivered after revision 3
    update(c, 'c1')
    master.call('sync', model=M, pk=c)
    written += 1
    update(c, 'c2')
    update(c, 'c3')
    d = create('d0')  # D: every event three times, shuffled
    for i in range(1, 3):
        update(d, f'd{i}')

    events = _capture(stack, tap_exchange, tap_queue, written)
    assert len(events) == written, f'captured {len(events)} of {written} events'

    def of(pk: int, signal: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        found = [e for e in events if e[1]['instance_pk'] == pk]
        return [e for e in found if signal is None or e[1]['signal_type'] == signal]

    def rev(e: tuple[str, dict[str, Any]]) -> int:
        return int(e[1]['instance_data']['cqrs_revision'])

    saves_a = sorted(of(a, 'SAVE'), key=rev)
    saves_b, [delete_b] = sorted(of(b, 'SAVE'), key=rev), of(b, 'DELETE')
    saves_c, [sync_c] = sorted(of(c, 'SAVE'), key=rev), of(c, 'SYNC')
    saves_d = of(d, 'SAVE')
    assert [rev(e) for e in saves_a] == [0, 1, 2, 3, 4] and rev(sync_c) == 1
    rng = random.Random(5)
    groups = [
        [*saves_a[::-1], saves_a[2], saves_a[4], saves_a[0]],  # reordered + duplicated
        [delete_b, saves_b[2], saves_b[1], saves_b[0], delete_b, saves_b[2]],  # save-after-delete
        [saves_c[3], sync_c, saves_c[2], sync_c, saves_c[0]],  # stale sync after a newer save
        rng.sample(saves_d * 3, len(saves_d) * 3),  # duplicates
    ]
    plan: list[tuple[str, dict[str, Any]]] = []
    while any(groups):  # interleave the groups, keeping each one's order
        for g in groups:
            if g:
                plan.append(g.pop(0))

    conn = stack.broker.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(content_type='text/plain', delivery_mode=2)
    for routing_key, body in plan:
        ch.basic_publish(stack.broker.exchange, routing_key, json.dumps(body).encode(), props, mandatory=True)
    conn.close()

    report = case.finish(written)
    report.notes.append(
        f'{written} master events captured on a tap exchange, {len(plan)} deliveries injected'
    )
    report.published = len(plan)
    assert report.received == len(plan)
    assert report.duplicates >= 1 and report.stale_skipped >= 1
    state = case.tables.rows('replica', case.start_pk)
    assert b not in state, 'a SAVE delivered after its DELETE re-created the row'
    assert state[a]['cqrs_revision'] == 4 and state[c]['cqrs_revision'] == 3
    check(case, report, outbox_matters=False)


# --------------------------------------------------------------------------------------------
# 6. A 60-second soak with random cuts of both links


SOAK_SECONDS = 60


def test_soak_random_cuts(case: crash.Case) -> None:
    stack = case.stack
    master = case.agent('master')
    load = crash.Background(
        lambda: master.call(
            'load',
            model=M,
            field=F,
            duration=SOAK_SECONDS,
            rate=300,
            threads=2,
            pool=400,
            seed=6,
            timeout=180,
        )
    )
    rng = random.Random(6)
    cuts = {'master': 0, 'replica': 0, 'both': 0}
    proxies = {
        'master': [stack.master_proxy],
        'replica': [stack.replica_proxy],
        'both': [stack.master_proxy, stack.replica_proxy],
    }
    end = time.monotonic() + SOAK_SECONDS - 4
    time.sleep(2)
    while time.monotonic() < end:
        which = rng.choice(list(proxies))
        cuts[which] += 1
        for proxy in proxies[which]:
            proxy.cut()
        time.sleep(min(rng.uniform(0.3, 5.0), max(0.0, end - time.monotonic())))
        for proxy in proxies[which]:
            proxy.restore()
        time.sleep(rng.uniform(1.0, 5.0))
    counts = load.join(120)
    stack.heal()
    backlog = case.tables.outbox_backlog()
    assert case.relay_once() == 0, harness.tail(case.logs / 'relay-1.log')
    report = case.finish(counts['writes'], case.wait_converged(timeout=120))
    report.notes.append(
        f'{counts["writes"]} writes in {counts["elapsed"]:.0f} s '
        f'({counts["writes"] / counts["elapsed"]:.0f}/s), cuts {cuts}, outbox before the relay: {backlog}'
    )
    assert counts['errors'] == 0
    check(case, report)
