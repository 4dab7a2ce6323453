"""The transport contract, written once and run against every broker.

Each case drives the real consumer (:class:`dj_cqrs.consumer.worker.Worker`) over a real broker:
in-memory, RabbitMQ (own vhost), Kombu on Redis (own key names) and Kombu on ``filesystem://``
(own folders). The replica side is the test app's models on PostgreSQL.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from dj_cqrs.consumer.worker import Worker
from dj_cqrs.core import codec
from dj_cqrs.core.routing import HEADER_DEAD_LETTER_REASON, Topology, broadcast_key, direct_key
from dj_cqrs.payload import TransportPayload
from dj_cqrs.replica.mixins import RawReplicaMixin, ReplicaMeta
from dj_cqrs.transport.base import Broker, BrokerConsumer, Delivery, OutboundMessage
from dj_cqrs.transport.bridge import outbound_message
from tests.support import services
from tests.testapp.models import BasicReplica

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyReplica(RawReplicaMixin):
    """Fails its first ``fail_times`` saves; records every attempt."""

    CQRS_ID = 'flaky'
    fail_times = 0
    attempts: list[int] = []
    errors: list[Any] = []

    @classmethod
    def cqrs_save(
        cls, master_data: Any, previous_data: Any = None, sync: bool = False, meta: Any = None
    ) -> Any:
        cls.attempts.append(master_data['id'])
        if len(cls.attempts) <= cls.fail_times:
            raise RuntimeError(f'flaky failure {len(cls.attempts)}')
        return True

    @classmethod
    def cqrs_delete(cls, master_data: Any, meta: Any = None) -> Any:
        return True

    @classmethod
    def should_retry_cqrs(cls, current_retry: int, exception: BaseException | None = None) -> bool:
        cls.errors.append(exception)
        return current_retry < 3

    @classmethod
    def get_cqrs_retry_delay(cls, current_retry: int) -> float:
        return 0.3


ReplicaMeta.register(FlakyReplica)


# -- brokers ------------------------------------------------------------------------------------
def _memory(name: str) -> Iterator[Broker]:
    from dj_cqrs.transport.memory import MemoryBroker

    yield MemoryBroker(exchange=name)


def _rabbitmq(name: str) -> Iterator[Broker]:
    from dj_cqrs.transport.rabbitmq import RabbitMQBroker

    with services.rabbit_vhost('cqrs_contract') as vhost:
        broker = RabbitMQBroker(url=services.amqp_url(vhost), exchange=name)
        yield broker
        broker.close()


def _kombu_redis(name: str) -> Iterator[Broker]:
    import redis

    from dj_cqrs.transport.kombu import KombuBroker

    broker = KombuBroker(url='redis://127.0.0.1:6379/0', exchange=name)
    yield broker
    broker.close()
    client = redis.Redis(host='127.0.0.1', port=6379, db=0)
    for key in client.scan_iter(f'*{name}*'):
        client.delete(key)
    client.close()


def _kombu_filesystem(name: str, tmp_path_factory: Any) -> Iterator[Broker]:
    from dj_cqrs.transport.kombu import KombuBroker

    root = tmp_path_factory.mktemp('kombu_fs')
    options = {
        'data_folder_in': str(root / 'data'),
        'data_folder_out': str(root / 'data'),
        'control_folder': str(root / 'control'),
    }
    broker = KombuBroker(url='filesystem://', exchange=name, transport_options=options)
    yield broker
    broker.close()


BROKERS: dict[str, Callable[..., Iterator[Broker]]] = {
    'memory': _memory,
    'rabbitmq': _rabbitmq,
    'kombu-redis': _kombu_redis,
    'kombu-filesystem': _kombu_filesystem,
}


@pytest.fixture(params=list(BROKERS))
def env(request: Any, tmp_path_factory: Any) -> Iterator[ContractEnv]:
    name = f'cqrs_ct_{uuid.uuid4().hex[:8]}'
    factory = BROKERS[request.param]
    args = (name, tmp_path_factory) if request.param == 'kombu-filesystem' else (name,)
    gen = factory(*args)
    broker = next(gen)
    queue = f'{name}_q'
    settings = {
        'transport': 'dj_cqrs.testing.MemoryTransport',
        'queue': queue,
        'exchange': name,
        'replica': {'CQRS_MAX_RETRIES': 2, 'CQRS_RETRY_DELAY': 0},
    }
    FlakyReplica.fail_times = 0
    FlakyReplica.attempts = []
    FlakyReplica.errors = []
    with override_settings(CQRS=settings):
        contract = ContractEnv(request.param, broker, queue, name)
        try:
            yield contract
        finally:
            contract.close()
            try:
                next(gen)
            except StopIteration:
                pass


class ContractEnv:
    def __init__(self, kind: str, broker: Broker, queue: str, exchange: str) -> None:
        self.kind = kind
        self.broker = broker
        self.queue = queue
        self.topology = Topology(
            exchange=exchange,
            queue=queue,
            dead_letter_queue=f'dead_letter_{queue}',
            cqrs_ids=('basic', 'flaky'),
        )
        self.worker = Worker(broker, self.topology, prefetch=20)
        self.consumer: BrokerConsumer = broker.open_consumer(self.topology, 20)
        self._dlq: BrokerConsumer | None = None

    def close(self) -> None:
        self.consumer.close()
        if self._dlq is not None:
            self._dlq.close()
        if self.worker._delay_reader is not None:
            self.worker._delay_reader.close()

    def publish(self, payload: TransportPayload) -> None:
        self.broker.publish([outbound_message(payload)])

    def publish_raw(self, body: bytes, routing_key: str = 'basic') -> None:
        self.broker.publish([OutboundMessage(routing_key, body)])

    def run_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.worker.run_once(self.consumer, timeout=0.2)
            if condition():
                return
        raise AssertionError(f'condition not met within {timeout}s on {self.kind}')

    def dead_letters(self, expected: int, timeout: float = 10.0) -> list[Delivery]:
        if self._dlq is None:
            self._dlq = self.broker.open_reader(self.topology.exchange, self.topology.dead_letter_queue)
        got: list[Delivery] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += self._dlq.fetch(100, 0.2)
        return got


def save_payload(
    pk: int, name: str = 'n', revision: int = 0, cqrs_id: str = 'basic', **kw: Any
) -> TransportPayload:
    data = {
        'id': pk,
        'name': name,
        'counter': 0,
        'cqrs_revision': revision,
        'cqrs_updated': '2024-05-01 10:00:00+00:00',
    }
    return TransportPayload(kw.pop('signal_type', 'SAVE'), cqrs_id, data, pk, **kw)


def reason_of(delivery: Delivery) -> str:
    value = delivery.headers.get(HEADER_DEAD_LETTER_REASON)
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the contract ---------------------------------------------------------------------------------
def test_publish_and_consume(env: ContractEnv) -> None:
    env.publish(save_payload(1, 'first'))
    env.publish(save_payload(1, 'second', revision=1))
    env.run_until(lambda: BasicReplica.objects.filter(pk=1, cqrs_revision=1).exists())
    assert BasicReplica.objects.get(pk=1).name == 'second'
    assert env.worker.applied == 2


def test_direct_sync_reaches_only_its_replica(env: ContractEnv) -> None:
    env.publish(save_payload(2, 'mine', signal_type='SYNC', queue=env.queue))
    env.publish(save_payload(3, 'theirs', signal_type='SYNC', queue='another_replica'))
    env.publish(save_payload(4, 'marker'))
    env.run_until(lambda: BasicReplica.objects.filter(pk=4).exists())
    assert BasicReplica.objects.filter(pk=2, name='mine').exists()
    assert not BasicReplica.objects.filter(pk=3).exists()


def test_routing_keys_are_upstream_ones() -> None:
    payload = save_payload(5, signal_type='SYNC', queue='q1')
    assert outbound_message(payload).routing_key == direct_key('q1', 'basic') == 'cqrs.q1.basic'
    assert outbound_message(save_payload(5)).routing_key == broadcast_key('basic') == 'basic'


def test_retry_with_delay_then_applied(env: ContractEnv) -> None:
    FlakyReplica.fail_times = 2
    started = time.monotonic()
    env.publish(save_payload(6, cqrs_id='flaky'))
    env.run_until(lambda: len(FlakyReplica.attempts) == 3, timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.55, 'two retries of 0.3 s each wait in the broker'
    assert all(isinstance(e, RuntimeError) for e in FlakyReplica.errors), (
        'the retry hook sees the real exception'
    )
    assert env.worker.applied == 1
    assert not env.dead_letters(1, timeout=0.5)


def test_max_retries_end_in_dead_letter_queue(env: ContractEnv) -> None:
    FlakyReplica.fail_times = 100
    env.publish(save_payload(7, cqrs_id='flaky', correlation_id='corr-7'))
    env.run_until(lambda: len(FlakyReplica.attempts) == 4, timeout=15)
    letters = env.dead_letters(1)
    assert len(letters) == 1
    body = json.loads(letters[0].body)
    assert body['retries'] == 3, 'attempted 1 + 3 retries; the dead letter carries the last count'
    assert body['correlation_id'] == 'corr-7'
    assert 'failed after 3 retries: RuntimeError: flaky failure 4' in reason_of(letters[0])
    assert list(body) == list(codec.BODY_KEYS)


def test_expired_message_is_dead_lettered(env: ContractEnv) -> None:
    import datetime as dt

    from django.utils import timezone

    env.publish(save_payload(8, expires=timezone.now() - dt.timedelta(seconds=5)))
    env.publish(save_payload(9))
    env.run_until(lambda: BasicReplica.objects.filter(pk=9).exists())
    assert not BasicReplica.objects.filter(pk=8).exists()
    letters = env.dead_letters(1)
    assert [reason_of(d) for d in letters] == ['expired']


POISON_BODIES: dict[str, bytes] = {
    'invalid json': b'{not json',
    'empty body': b'',
    'binary garbage': bytes(range(256)),
    'json number': b'42',
    'json string': b'"SAVE"',
    'json array': b'[1, 2, 3]',
    'json null': b'null',
    'missing signal_type': b'{"cqrs_id":"basic","instance_data":{},"instance_pk":1}',
    'missing cqrs_id': b'{"signal_type":"SAVE","instance_data":{},"instance_pk":1}',
    'missing instance_data': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_pk":1}',
    'missing instance_pk': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{}}',
    'unknown signal type': b'{"signal_type":"UPSERT","cqrs_id":"basic","instance_data":{},"instance_pk":1}',
    'signal type not a string': b'{"signal_type":1,"cqrs_id":"basic","instance_data":{},"instance_pk":1}',
    'cqrs_id not a string': b'{"signal_type":"SAVE","cqrs_id":["basic"],"instance_data":{},"instance_pk":1}',
    'instance_data a list': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":[],"instance_pk":1}',
    'instance_pk an object': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":{}}',
    'bad expires': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":1,"expires":"soon"}',
    'expires a number': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":1,"expires":5}',
    'negative retries': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":1,"retries":-1}',
    'retries a string': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":1,"retries":"2"}',
    'previous_data a list': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{},"instance_pk":1,"previous_data":[]}',
    'deeply nested': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":'
    + b'[' * 100000
    + b']' * 100000
    + b'}',
    'huge body': b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{"x":"'
    + b'a' * (17 * 1024 * 1024)
    + b'"}}',
}


def test_poison_bodies_are_dead_lettered_and_the_worker_lives_on(env: ContractEnv) -> None:
    bodies = dict(POISON_BODIES)
    if env.kind == 'kombu-filesystem' or env.kind == 'kombu-redis':
        bodies.pop('huge body')  # kept small on brokers that copy whole files/values around
    for body in bodies.values():
        env.publish_raw(body)
    env.publish_raw(b'{"signal_type":"SAVE","cqrs_id":"nobody","instance_data":{},"instance_pk":1}', 'basic')
    env.publish(save_payload(10, 'alive'))
    env.run_until(lambda: BasicReplica.objects.filter(pk=10).exists(), timeout=30)
    letters = env.dead_letters(len(bodies) + 1, timeout=15)
    assert len(letters) == len(bodies) + 1
    reasons = [reason_of(d) for d in letters]
    assert all(reasons), reasons
    assert any("unknown cqrs_id 'nobody'" in r for r in reasons)
    assert sorted(d.body for d in letters if 'unknown cqrs_id' not in reason_of(d)) == sorted(
        bodies.values()
    ), 'the original bytes are kept'


def test_unacked_delivery_returns_after_consumer_closes(env: ContractEnv) -> None:
    env.publish(save_payload(11, 'again'))
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + 10
    while not deliveries and time.monotonic() < deadline:
        deliveries = env.consumer.fetch(1, 0.2)
    assert deliveries
    env.consumer.close()
    env.consumer = env.broker.open_consumer(env.topology, 20)
    env.run_until(lambda: BasicReplica.objects.filter(pk=11, name='again').exists())
