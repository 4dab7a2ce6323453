"""RabbitMQBroker against the machine's real RabbitMQ, in a vhost of its own (no mocks)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pytest

from dj_cqrs.core.routing import Topology, default_dead_letter_queue, delay_queue_name, direct_key
from dj_cqrs.transport.base import OutboundMessage, PublishError, TransportError
from dj_cqrs.transport.rabbitmq import RabbitMQBroker, RabbitMQConsumer
from tests.support.services import RABBIT_HOST, amqp_url, rabbit_vhost

SECRET = 'Sup3r:S3cr%t'
SECRET_URL = 'Sup3r%3AS3cr%25t'


@pytest.fixture(scope='module')
def vhost() -> Iterator[str]:
    with rabbit_vhost('cqrs_rmq') as name:
        yield name


@pytest.fixture
def broker(vhost: str) -> Iterator[RabbitMQBroker]:
    b = RabbitMQBroker(url=amqp_url(vhost), name=f'test_{uuid.uuid4().hex[:6]}', publish_timeout=5)
    yield b
    b.close()


def topology(cqrs_ids: tuple[str, ...] = ('author',)) -> Topology:
    queue = f'q_{uuid.uuid4().hex[:8]}'
    return Topology('cqrs', queue, default_dead_letter_queue(queue), cqrs_ids)


def drain(consumer: RabbitMQConsumer, count: int, timeout: float = 5.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batch = consumer.fetch(500, 0.5)
        consumer.ack(batch)
        got.extend(batch)
    return got


def close_broker_connections(vhost: str, connection_name: str) -> int:
    """Make the broker close this vhost's connections named ``connection_name`` (not everyone's)."""
    out = subprocess.run(
        ['rabbitmqctl', '-q', 'list_connections', '--no-table-headers', 'pid', 'vhost', 'client_properties'],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    closed = 0
    for line in out.splitlines():
        pid, conn_vhost, props = line.split('\t', 2)
        if conn_vhost == vhost and f'"connection_name","{connection_name}"' in props:
            subprocess.run(['rabbitmqctl', '-q', 'close_connection', pid, 'test'], check=True, timeout=60)
            closed += 1
    return closed


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('path', 'expected'),
    [('', '/'), ('/', '/'), ('/%2F', '/'), ('/myvhost', 'myvhost'), ('/a%2Fb', 'a/b')],
)
def test_url_vhost(path: str, expected: str) -> None:
    params = RabbitMQBroker(url=f'amqp://u:p@rabbit.example:5673{path}').connection_parameters()
    assert (params.host, params.port, params.virtual_host) == ('rabbit.example', 5673, expected)


def test_url_credentials_and_query_options() -> None:
    url = (
        f'amqp://us%40er:{SECRET_URL}@h/v?heartbeat=7&connection_attempts=3&retry_delay=0.5&socket_timeout=4'
    )
    params = RabbitMQBroker(url=url).connection_parameters()
    assert (params.credentials.username, params.credentials.password) == ('us@er', SECRET)
    assert (params.heartbeat, params.connection_attempts, params.retry_delay, params.socket_timeout) == (
        7,
        3,
        0.5,
        4,
    )


def test_defaults_and_overrides() -> None:
    params = RabbitMQBroker(url='amqp://u:p@h/').connection_parameters()
    assert params.heartbeat == 60
    assert params.client_properties['connection_name'] == 'dj_cqrs.producer'
    broker = RabbitMQBroker(
        url='amqp://u:p@h/?heartbeat=7', heartbeat=20, blocked_connection_timeout=30, connection_attempts=4
    )
    params = broker.connection_parameters('consumer')
    assert (params.heartbeat, params.blocked_connection_timeout, params.connection_attempts) == (20, 30, 4)
    assert params.client_properties['connection_name'] == 'dj_cqrs.consumer'


def test_amqps_scheme_sets_ssl() -> None:
    params = RabbitMQBroker(url='amqps://u:p@rabbit.example/v').connection_parameters()
    assert params.ssl_options is not None
    assert params.port == 5671
    assert RabbitMQBroker(url='amqps://u:p@rabbit.example/v').safe_url.startswith('amqps://')


@pytest.mark.parametrize('url', [f'redis://u:{SECRET_URL}@h/0', f'http://u:{SECRET_URL}@h/'])
def test_bad_scheme(url: str) -> None:
    with pytest.raises(ValueError, match=r"CQRS\['url'\]") as info:
        RabbitMQBroker(url=url)
    assert SECRET_URL not in str(info.value) and SECRET not in str(info.value)


def test_bad_query_option_masks_password() -> None:
    with pytest.raises(ValueError, match='bogus') as info:
        RabbitMQBroker(url=f'amqp://u:{SECRET_URL}@h/?bogus=1')
    assert SECRET_URL not in str(info.value) and SECRET not in str(info.value)


def test_legacy_keys() -> None:
    params = RabbitMQBroker(
        host='rabbit.example', port=5673, user='bob', password=SECRET
    ).connection_parameters()
    assert (params.host, params.port, params.virtual_host) == ('rabbit.example', 5673, '/')
    assert (params.credentials.username, params.credentials.password) == ('bob', SECRET)
    params = RabbitMQBroker().connection_parameters()
    assert (params.host, params.port, params.credentials.username, params.credentials.password) == (
        'localhost',
        5672,
        'guest',
        'guest',
    )


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match='queue_ttl'):
        RabbitMQBroker(url='amqp://h/', queue_ttl=1)  # type: ignore[call-arg]


def test_safe_url_masks_password() -> None:
    broker = RabbitMQBroker(url=f'amqp://bob:{SECRET_URL}@h:5673/%2F?heartbeat=5')
    assert broker.safe_url == 'amqp://bob:***@h:5673/%2F'
    assert RabbitMQBroker(password=SECRET).safe_url == 'amqp://guest:***@localhost:5672/%2F'


def test_broker_down_raises_within_bounded_time_and_never_logs_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, pika's included
    broker = RabbitMQBroker(url=f'amqp://bob:{SECRET_URL}@127.0.0.1:1/')  # default publish_timeout
    msg = OutboundMessage('author', b'{}', describe='pk = 1 (author)')
    started = time.monotonic()
    try:
        with pytest.raises(PublishError) as info:
            broker.publish([msg])
        assert time.monotonic() - started < broker.publish_timeout + 1
        assert info.value.failed == [msg]
        assert isinstance(info.value, TransportError)
        with pytest.raises(TransportError) as qinfo:
            broker.queue_size('q')
        assert isinstance(qinfo.value.__cause__, Exception)
    finally:
        broker.close()
    texts = [caplog.text, str(info.value), str(qinfo.value)]
    assert not [t for t in texts if SECRET in t or SECRET_URL in t]
    assert '127.0.0.1:1' in caplog.text  # the safe URL is logged


# --- producer ----------------------------------------------------------------------------------------


def test_round_trip_with_headers_and_expiration(broker: RabbitMQBroker) -> None:
    topo = topology()
    consumer = broker.open_consumer(topo, prefetch=10)
    try:
        returned = broker.publish(
            [
                OutboundMessage('author', b'{"a":1}', headers={'h': 'v', 'n': 2}),
                OutboundMessage('author', b'ttl', expiration_ms=60_000),
                OutboundMessage(direct_key(topo.queue, 'author'), b'direct'),
            ]
        )
        assert returned == []
        got = drain(consumer, 3)
        assert [(d.body, d.routing_key) for d in got] == [
            (b'{"a":1}', 'author'),
            (b'ttl', 'author'),
            (b'direct', direct_key(topo.queue, 'author')),
        ]
        assert got[0].headers == {'h': 'v', 'n': 2}
        assert got[1].headers == {} and got[1].redelivered is False
    finally:
        consumer.close()
    # Expiration is applied by the broker to a message waiting in the queue (no consumer attached).
    broker.publish(
        [OutboundMessage('author', b'expires', expiration_ms=1), OutboundMessage('author', b'stays')]
    )
    time.sleep(0.2)
    assert broker.queue_size(topo.queue) == 1


def test_pipelined_confirms_2000_messages_in_order(broker: RabbitMQBroker) -> None:
    consumer = broker.open_consumer(topology(), prefetch=500)
    try:
        started = time.monotonic()
        assert broker.publish([OutboundMessage('author', b'%d' % i) for i in range(2000)]) == []
        assert time.monotonic() - started < 5  # one confirm round trip per message would be far slower
        got = drain(consumer, 2000)
        assert [int(d.body) for d in got] == list(range(2000))
    finally:
        consumer.close()


def test_unroutable_is_returned_and_logged(broker: RabbitMQBroker, caplog: pytest.LogCaptureFixture) -> None:
    consumer = broker.open_consumer(topology(), prefetch=10)
    lost = OutboundMessage('nobody.listens', b'x', describe='pk = 7 (nobody)')
    kept = OutboundMessage('author', b'y')
    try:
        with caplog.at_level(logging.WARNING, logger='django-cqrs'):
            assert broker.publish([kept, lost, kept]) == [lost]
            assert consumer.publish([lost]) == [lost]  # the consumer's own publish behaves alike
        warnings = [r for r in caplog.records if r.name == 'django-cqrs' and r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert 'pk = 7 (nobody)' in warnings[0].getMessage() and 'nobody.listens' in warnings[0].getMessage()
        assert len(drain(consumer, 2)) == 2
    finally:
        consumer.close()


def test_publish_from_8_threads(broker: RabbitMQBroker) -> None:
    consumer = broker.open_consumer(topology(), prefetch=500)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                broker.publish([OutboundMessage('author', f'{n}:{i * 5 + j}'.encode()) for j in range(5)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        got = drain(consumer, 400)
        per_thread: dict[str, list[int]] = {}
        for d in got:
            n, i = d.body.decode().split(':')
            per_thread.setdefault(n, []).append(int(i))
        assert per_thread == {str(n): list(range(50)) for n in range(8)}
        assert broker._producer is not None and broker._producer.thread.is_alive()
    finally:
        consumer.close()


def test_publish_after_broker_closed_producer_connection(broker: RabbitMQBroker, vhost: str) -> None:
    consumer = broker.open_consumer(topology(), prefetch=10)
    try:
        broker.publish([OutboundMessage('author', b'before')])
        assert close_broker_connections(vhost, f'{broker.name}.producer') == 1
        broker.publish([OutboundMessage('author', b'right after')])  # may race the close: retried
        time.sleep(0.3)
        broker.publish([OutboundMessage('author', b'later')])
        assert [d.body for d in drain(consumer, 3)][-2:] == [b'right after', b'later']
    finally:
        consumer.close()


def test_idle_connection_kept_alive_by_heartbeats(vhost: str) -> None:
    broker = RabbitMQBroker(url=amqp_url(vhost), heartbeat=1)
    try:
        broker.publish([OutboundMessage('author', b'1')])
        assert broker._producer is not None
        conn = broker._producer._conn
        time.sleep(3.5)  # the broker drops a connection after two missed heartbeats
        broker.publish([OutboundMessage('author', b'2')])
        assert broker._producer._conn is conn and conn is not None and conn.is_open
    finally:
        broker.close()


def test_publish_in_forked_child(broker: RabbitMQBroker) -> None:
    consumer = broker.open_consumer(topology(), prefetch=10)
    try:
        broker.publish([OutboundMessage('author', b'parent')])
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                broker.publish([OutboundMessage('author', b'child')])
                broker.close()
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        broker.publish([OutboundMessage('author', b'parent again')])  # the parent's connection survived
        assert sorted(d.body for d in drain(consumer, 3)) == [b'child', b'parent', b'parent again']
    finally:
        consumer.close()


def test_close_joins_the_producer_thread(vhost: str) -> None:
    broker = RabbitMQBroker(url=amqp_url(vhost))
    broker.publish([OutboundMessage('author', b'x')])
    assert broker._producer is not None
    thread = broker._producer.thread
    broker.close()
    assert not thread.is_alive()
    broker.close()  # idempotent


# --- consumer -----------------------------------------------------------------------------------------


def test_fetch_timeout_on_empty_queue(broker: RabbitMQBroker) -> None:
    consumer = broker.open_consumer(topology(), prefetch=10)
    try:
        started = time.monotonic()
        assert consumer.fetch(10, 0.5) == []
        assert 0.4 <= time.monotonic() - started < 1.5
    finally:
        consumer.close()


def test_fetch_returns_what_is_buffered_without_waiting_for_more(broker: RabbitMQBroker) -> None:
    topo = topology()
    consumer = broker.open_consumer(topo, prefetch=50)
    try:
        broker.publish([OutboundMessage('author', b'%d' % i) for i in range(5)])
        started = time.monotonic()
        first = consumer.fetch(3, 5)
        rest = consumer.fetch(100, 5)
        assert time.monotonic() - started < 2
        assert [d.body for d in first + rest] == [b'0', b'1', b'2', b'3', b'4']
        consumer.ack(rest)  # unsettled tags below them: acked one by one, not with multiple=True
        consumer.ack(first)
    finally:
        consumer.close()
    assert broker.queue_size(topo.queue) == 0  # nothing was requeued at close


def test_requeue_and_drop(broker: RabbitMQBroker) -> None:
    topo = topology()
    consumer = broker.open_consumer(topo, prefetch=10)
    try:
        broker.publish([OutboundMessage('author', b'again'), OutboundMessage('author', b'gone')])
        first, second = drain_unacked(consumer, 2)
        consumer.requeue(first)
        consumer.drop(second)
        (redelivered,) = drain_unacked(consumer, 1)
        assert (redelivered.body, redelivered.redelivered) == (b'again', True)
        assert consumer.fetch(10, 0.3) == []
        consumer.ack([redelivered])
    finally:
        consumer.close()
    assert broker.queue_size(topo.queue) == 0
    assert broker.queue_size(topo.dead_letter_queue) == 0  # drop is not a dead letter by itself


def drain_unacked(consumer: RabbitMQConsumer, count: int) -> list:
    got: list = []
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.fetch(count - len(got), 0.5))
    return got


def test_queue_size_and_bindings(broker: RabbitMQBroker) -> None:
    topo = topology(('author', 'book'))
    assert broker.queue_size(topo.queue) == 0  # missing queue
    broker.open_consumer(topo, prefetch=1).close()
    broker.publish(
        [
            OutboundMessage('author', b'1'),
            OutboundMessage('book', b'2'),
            OutboundMessage(direct_key(topo.queue, 'book'), b'3'),
            OutboundMessage(direct_key(topo.dead_letter_queue, 'author'), b'dead'),
        ]
    )
    assert broker.queue_size(topo.queue) == 3
    assert broker.queue_size(topo.dead_letter_queue) == 1
    assert broker.queue_size('never-declared') == 0  # and the admin connection is still usable
    assert broker.queue_size(topo.queue) == 3


def test_delay_queue_round_trip_survives_consumer_restart(broker: RabbitMQBroker) -> None:
    topo = topology()
    consumer = broker.open_consumer(topo, prefetch=10)
    name = broker.declare_delay_queue(topo.queue, 300)
    assert name == delay_queue_name(topo.queue, 300)
    assert broker.declare_delay_queue(topo.queue, 300) == name  # idempotent
    try:
        assert consumer.publish([OutboundMessage(name, b'retry me', headers={'retry': 1}, exchange='')]) == []
        assert broker.queue_size(name) == 1
        assert consumer.fetch(10, 0.1) == []
    finally:
        consumer.close()
    time.sleep(0.4)  # the delay elapses while nobody consumes: the broker holds the message
    consumer = broker.open_consumer(topo, prefetch=10)
    try:
        (delivery,) = drain(consumer, 1)
        assert delivery.body == b'retry me'
        assert delivery.routing_key == topo.queue
        assert delivery.headers['retry'] == 1
        assert broker.queue_size(name) == 0
        # The broker-side producer path reaches the delay queue too.
        broker.publish([OutboundMessage(name, b'again', exchange='')])
        assert [d.body for d in drain(consumer, 1)] == [b'again']
    finally:
        consumer.close()


def test_takes_over_upstream_style_queues(broker: RabbitMQBroker, vhost: str) -> None:
    topo = topology()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url(vhost)))
    try:
        channel = conn.channel()
        channel.exchange_declare('cqrs', 'topic', durable=True)
        channel.queue_declare(topo.queue, durable=True)
        channel.queue_declare(topo.dead_letter_queue, durable=True)
        channel.basic_publish('', topo.queue, b'left by upstream')
    finally:
        conn.close()
    consumer = broker.open_consumer(topo, prefetch=10)
    try:
        broker.publish([OutboundMessage('author', b'new')])
        assert [d.body for d in drain(consumer, 2)] == [b'left by upstream', b'new']
    finally:
        consumer.close()


def test_consumer_connection_loss_is_a_transport_error(broker: RabbitMQBroker, vhost: str) -> None:
    consumer = broker.open_consumer(topology(), prefetch=10)
    assert close_broker_connections(vhost, f'{broker.name}.consumer') == 1
    with pytest.raises(TransportError) as info:
        for _ in range(20):  # the loss is seen on the next I/O
            consumer.fetch(10, 0.2)
    assert isinstance(info.value.__cause__, pika.exceptions.AMQPError)
    with pytest.raises(PublishError) as pinfo:
        consumer.publish([OutboundMessage('author', b'x')])
    assert len(pinfo.value.failed) == 1
    consumer.close()
    consumer.close()


def test_open_consumer_on_unreachable_broker() -> None:
    broker = RabbitMQBroker(url=f'amqp://guest:guest@{RABBIT_HOST}:1/')
    with pytest.raises(TransportError):
        broker.open_consumer(topology(), prefetch=1)


# --- failure paths on the real broker -----------------------------------------------------------------


def declare_full_queue(vhost: str, routing_key: str) -> str:
    """A queue that holds one message and makes the broker nack any publish beyond that."""
    queue = f'full_{uuid.uuid4().hex[:8]}'
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url(vhost)))
    try:
        channel = conn.channel()
        channel.exchange_declare('cqrs', 'topic', durable=True)
        channel.queue_declare(queue, arguments={'x-max-length': 1, 'x-overflow': 'reject-publish'})
        channel.queue_bind(queue, 'cqrs', routing_key=routing_key)
    finally:
        conn.close()
    return queue


def test_nacked_messages_raise_publish_error(broker: RabbitMQBroker, vhost: str) -> None:
    key = f'limited.{uuid.uuid4().hex[:6]}'
    queue = declare_full_queue(vhost, key)
    msgs = [OutboundMessage(key, b'%d' % i) for i in range(3)]
    with pytest.raises(PublishError, match='nack') as info:
        broker.publish(msgs)
    assert info.value.failed == msgs[1:]
    assert broker.queue_size(queue) == 1
    consumer = broker.open_consumer(topology(), prefetch=1)
    try:
        with pytest.raises(PublishError, match='nack') as cinfo:
            consumer.publish([msgs[2]])
        assert cinfo.value.failed == [msgs[2]]
    finally:
        consumer.close()


def test_channel_error_fails_the_batch_and_the_producer_recovers(broker: RabbitMQBroker, vhost: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url(vhost)))
    try:
        conn.channel().exchange_declare('direct_one', 'direct', durable=True)
    finally:
        conn.close()
    bad = OutboundMessage('author', b'x', exchange='direct_one')  # our topic declare -> PRECONDITION_FAILED
    started = time.monotonic()
    with pytest.raises(PublishError, match='PRECONDITION_FAILED') as info:
        broker.publish([bad])
    assert info.value.failed == [bad]
    assert time.monotonic() - started < broker.publish_timeout + 1
    consumer = broker.open_consumer(topology(), prefetch=10)
    try:
        broker.publish([OutboundMessage('author', b'fine')])
        assert [d.body for d in drain(consumer, 1)] == [b'fine']
    finally:
        consumer.close()


def test_connection_loss_mid_stream_loses_nothing(broker: RabbitMQBroker, vhost: str) -> None:
    consumer = broker.open_consumer(topology(), prefetch=500)
    sent: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def stream() -> None:
        n = 0
        while not stop.is_set() and n < 200_000:
            batch = [OutboundMessage('author', b'%d' % (n + i)) for i in range(200)]
            n += 200
            try:
                broker.publish(batch)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            sent.extend(m.body for m in batch)

    thread = threading.Thread(target=stream)
    try:
        thread.start()
        time.sleep(0.3)
        assert close_broker_connections(vhost, f'{broker.name}.producer') == 1
        time.sleep(0.5)
        stop.set()
        thread.join(30)
        assert errors == []
        got = set()
        while batch := consumer.fetch(500, 0.5):
            consumer.ack(batch)
            got.update(d.body for d in batch)
        assert set(sent) <= got  # at least once: a message unconfirmed at the cut may arrive twice
    finally:
        stop.set()
        consumer.close()


def test_unresponsive_broker_times_out_and_close_does_not_hang() -> None:
    # A port that accepts TCP connections (kernel backlog) but never speaks AMQP: pika's connect hangs.
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen(8)
        port = server.getsockname()[1]
        broker = RabbitMQBroker(url=f'amqp://guest:guest@127.0.0.1:{port}/', publish_timeout=1.5)
        started = time.monotonic()
        with pytest.raises(PublishError, match='timed out'):
            broker.publish([OutboundMessage('author', b'x')])
        assert time.monotonic() - started < 3
        assert broker._producer is not None
        thread = broker._producer.thread
        started = time.monotonic()
        broker.close()  # the connection is still opening
        assert time.monotonic() - started < 3 and not thread.is_alive()
