"""Raw ceilings of this machine: pika and psycopg with no framework in between.

Run as a separate process by bench/run.py (``python -m bench.scenarios.raw <mode> '<json>'``),
printing one JSON object; its own CPU and peak RSS come from ``resource``.

* ``publish``: N persistent, mandatory messages of an event's size to a durable bound queue, with
  ``confirms`` = ``none`` (BlockingConnection, no confirms), ``pipelined`` (SelectConnection, every
  message published, then the acks counted) or ``blocking`` (one publish, wait for its ack, repeat:
  the floor of a publish that waits for its confirm in the caller's thread).
* ``prefill``: one SAVE event per master row, in the wire format, to the drain exchange.
* ``consume``: drain N events from a queue into the replica table: prefetch 1000, every message
  already received (up to ``batch``) decoded and upserted in one statement (``unnest``), revision
  fenced, one commit, then one ``basic_ack(multiple=True)``.
* ``upsert``: the master's N rows upserted into an empty replica table in one transaction.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

UPSERT_SQL = """
INSERT INTO {t} AS r (id, cqrs_revision, cqrs_updated, name, value, payload)
SELECT * FROM unnest(%s::int[], %s::int[], %s::timestamptz[], %s::text[], %s::int[], %s::text[])
ON CONFLICT (id) DO UPDATE SET
  cqrs_revision = EXCLUDED.cqrs_revision, cqrs_updated = EXCLUDED.cqrs_updated,
  name = EXCLUDED.name, value = EXCLUDED.value, payload = EXCLUDED.payload
WHERE r.cqrs_revision < EXCLUDED.cqrs_revision
"""


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        'cpu_s': round(usage.ru_utime + usage.ru_stime, 3),
        'peak_rss_mb': round(usage.ru_maxrss / 1024, 1),
    }


def event_body(i: int) -> bytes:
    """A SAVE event of the bench model, the size the packages publish."""
    return json.dumps(
        {
            'signal_type': 'SAVE',
            'cqrs_id': 'bench',
            'instance_data': {
                'id': i,
                'name': f'raw-{i}',
                'value': i,
                'payload': 'p' * 100,
                'cqrs_revision': 0,
                'cqrs_updated': '2026-01-01 00:00:00.000000+00:00',
            },
            'previous_data': None,
            'instance_pk': i,
            'correlation_id': None,
            'retries': 0,
            'expires': '2026-01-02T00:00:00+00:00',
            'meta': {},
        }
    ).encode()


def _params(vhost: str) -> Any:
    import pika

    return pika.ConnectionParameters(
        host='127.0.0.1', port=5672, virtual_host=vhost, credentials=pika.PlainCredentials('guest', 'guest')
    )


def publish(vhost: str, exchange: str, queue: str, n: int, confirms: str) -> dict[str, Any]:
    import pika

    props = pika.BasicProperties(content_type='text/plain', delivery_mode=2)
    bodies = [event_body(i) for i in range(n)]
    setup = pika.BlockingConnection(_params(vhost))
    ch = setup.channel()
    ch.exchange_declare(exchange, 'topic', durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, routing_key='bench')
    ch.queue_purge(queue)
    if confirms in ('none', 'blocking'):
        if confirms == 'blocking':
            ch.confirm_delivery()
        t0 = time.perf_counter()
        for body in bodies:
            ch.basic_publish(exchange, 'bench', body, props, mandatory=True)
        if confirms == 'none':
            setup.process_data_events(0)
        elapsed = time.perf_counter() - t0
    else:
        elapsed = _publish_pipelined(vhost, exchange, bodies, props)
    # What the broker holds: everything published must be there.
    deadline = time.monotonic() + 30
    while ch.queue_declare(queue, passive=True).method.message_count < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stored = ch.queue_declare(queue, passive=True).method.message_count
    ch.queue_purge(queue)
    setup.close()
    return {'n': n, 'stored': stored, 'elapsed': elapsed, 'rate': n / elapsed, **_usage()}


def _publish_pipelined(vhost: str, exchange: str, bodies: list[bytes], props: Any) -> float:
    import pika

    state: dict[str, Any] = {'acked': 0, 't0': 0.0, 't1': 0.0, 'error': None}
    n = len(bodies)

    def on_ack(frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            state['error'] = 'nack'
        state['acked'] = method.delivery_tag if method.multiple else state['acked'] + 1
        if state['acked'] >= n:
            state['t1'] = time.perf_counter()
            conn.close()

    def on_confirm_ok(channel: Any) -> None:
        state['t0'] = time.perf_counter()
        for body in bodies:
            channel.basic_publish(exchange, 'bench', body, props, mandatory=True)

    def on_channel(channel: Any) -> None:
        channel.confirm_delivery(on_ack, callback=lambda _f: on_confirm_ok(channel))

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_closed(connection: Any, reason: Any) -> None:
        connection.ioloop.stop()

    conn = pika.SelectConnection(_params(vhost), on_open_callback=on_open, on_close_callback=on_closed)
    conn.ioloop.start()
    if state['error'] or not state['t1']:
        raise RuntimeError(f'pipelined publish failed: {state}')
    return float(state['t1'] - state['t0'])


def prefill(vhost: str, exchange: str, db: str, queues: list[str], n: int) -> dict[str, Any]:
    """Publish one SAVE event per master row (the wire format of UPSTREAM_SPEC §5.1, as a master
    sends it) to ``exchange`` with routing key ``bench``, pipelined confirms; wait until every
    queue in ``queues`` holds ``n`` messages."""
    import datetime as dt

    import pika
    import psycopg

    with psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname=db) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        data = conn.execute(
            'SELECT id, cqrs_revision, cqrs_updated, name, value, payload '
            'FROM master_app_benchmodel ORDER BY id'
        ).fetchall()
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).replace(microsecond=0).isoformat()
    bodies = [
        json.dumps(
            {
                'signal_type': 'SAVE',
                'cqrs_id': 'bench',
                'instance_data': {
                    'id': pk,
                    'cqrs_revision': rev,
                    'cqrs_updated': str(updated),
                    'name': name,
                    'value': value,
                    'payload': payload,
                },
                'previous_data': None,
                'instance_pk': pk,
                'correlation_id': None,
                'retries': 0,
                'expires': expires,
                'meta': {},
            },
            separators=(',', ':'),
        ).encode()
        for pk, rev, updated, name, value, payload in data
    ]
    props = pika.BasicProperties(content_type='text/plain', delivery_mode=2)
    elapsed = _publish_pipelined(vhost, exchange, bodies, props)
    check = pika.BlockingConnection(_params(vhost))
    deadline = time.monotonic() + 120
    while True:
        depths = [check.channel().queue_declare(q, passive=True).method.message_count for q in queues]
        if all(d == n for d in depths) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check.close()
    return {'n': len(bodies), 'depths': depths, 'elapsed': elapsed, **_usage()}


def consume(
    vhost: str, queue: str, db: str, n: int, batch: int = 1000, table: str = 'replica_app_benchreplica'
) -> dict[str, Any]:
    import pika
    import psycopg

    pgconn = psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname=db)
    conn = pika.BlockingConnection(_params(vhost))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    buffer: list[tuple[int, bytes]] = []
    ch.basic_consume(queue, lambda _c, method, _p, body: buffer.append((method.delivery_tag, body)))
    sql = UPSERT_SQL.format(t=table)
    done = batches = 0
    t0 = time.time()
    deadline = time.monotonic() + 600
    while done < n and time.monotonic() < deadline:
        conn.process_data_events(0 if buffer else 0.05)
        if not buffer:
            continue
        taken, buffer[:] = buffer[:batch], buffer[batch:]
        latest: dict[int, dict[str, Any]] = {}
        for _tag, body in taken:
            data = json.loads(body)['instance_data']
            seen = latest.get(data['id'])
            if seen is None or seen['cqrs_revision'] < data['cqrs_revision']:
                latest[data['id']] = data
        cols = list(
            zip(
                *[
                    (d['id'], d['cqrs_revision'], d['cqrs_updated'], d['name'], d['value'], d['payload'])
                    for d in latest.values()
                ]
            )
        )
        with pgconn.transaction():
            pgconn.execute(sql, [list(c) for c in cols])
        ch.basic_ack(taken[-1][0], multiple=True)
        done += len(taken)
        batches += 1
    elapsed = time.time() - t0
    conn.close()
    pgconn.close()
    return {'n': done, 'batches': batches, 'elapsed': elapsed, **_usage()}


def upsert(db: str, source_db: str, table: str = 'replica_app_benchreplica') -> dict[str, Any]:
    import psycopg

    with psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname=source_db) as src:
        data = src.execute(
            'SELECT id, cqrs_revision, cqrs_updated::text, name, value, payload FROM master_app_benchmodel'
        ).fetchall()
    cols = [list(c) for c in zip(*data)]
    with psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname=db) as conn:
        conn.execute(f'TRUNCATE {table}')
        conn.commit()
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute(UPSERT_SQL.format(t=table), cols)
        elapsed = time.perf_counter() - t0
    return {'n': len(data), 'elapsed': elapsed, 'rate': len(data) / elapsed, **_usage()}


MODES = {'publish': publish, 'prefill': prefill, 'consume': consume, 'upsert': upsert}

if __name__ == '__main__':
    result = MODES[sys.argv[1]](**json.loads(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + '\n')
