"""``cqrs_dead_letters`` on RabbitMQ, Kombu on Redis and the in-memory transport."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from dj_cqrs.consumer.worker import Worker, replica_topology
from dj_cqrs.transport import get_transport
from dj_cqrs.transport.base import OutboundMessage
from tests.support import services
from tests.testapp.models import BasicReplica

pytestmark = pytest.mark.django_db(transaction=True)

POISON = b'{"signal_type":"SAVE","cqrs_id":"basic","instance_data":{"id":1},"instance_pk":1}'


def _settings(kind: str, name: str, vhost: str | None) -> dict[str, Any]:
    base = {'queue': f'{name}_q', 'exchange': name, 'replica': {'CQRS_MAX_RETRIES': 0}}
    if kind == 'rabbitmq':
        return {
            **base,
            'transport': 'dj_cqrs.transport.RabbitMQTransport',
            'url': services.amqp_url(vhost or ''),
        }
    if kind == 'kombu-redis':
        return {
            **base,
            'transport': 'dj_cqrs.transport.kombu.KombuTransport',
            'url': 'redis://127.0.0.1:6379/0',
        }
    return {**base, 'transport': 'dj_cqrs.testing.MemoryTransport'}


@pytest.fixture(params=['rabbitmq', 'kombu-redis', 'memory'])
def transport(request: Any) -> Iterator[Any]:
    name = f'cqrs_dl_{uuid.uuid4().hex[:8]}'
    if request.param == 'rabbitmq':
        with (
            services.rabbit_vhost('cqrs_dl') as vhost,
            override_settings(CQRS=_settings('rabbitmq', name, vhost)),
        ):
            yield get_transport()
    else:
        with override_settings(CQRS=_settings(request.param, name, None)):
            yield get_transport()
        if request.param == 'kombu-redis':
            import redis

            client = redis.Redis(host='127.0.0.1', port=6379)
            for key in client.scan_iter(f'*{name}*'):
                client.delete(key)
            client.close()


def _dead_letter(transport: Any, bodies: list[bytes]) -> Worker:
    """Publish ``bodies`` and let the consumer dead-letter them (a row missing required fields
    fails, and CQRS_MAX_RETRIES=0 dead-letters at the first failure)."""
    broker = transport.broker()
    worker = Worker(broker, replica_topology())
    consumer = broker.open_consumer(worker.topology, 50)
    try:
        broker.publish([OutboundMessage('basic', body) for body in bodies])
        deadline = time.monotonic() + 10
        while worker.dead_lettered < len(bodies) and time.monotonic() < deadline:
            worker.run_once(consumer, timeout=0.2)
    finally:
        consumer.close()
    assert worker.dead_lettered == len(bodies)
    return worker


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command('cqrs_dead_letters', *args, stdout=out)
    return out.getvalue()


def _wait_count(expected: int) -> None:
    deadline = time.monotonic() + 5
    while _run('count').strip() != str(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _run('count').strip() == str(expected)


def test_count_dump_retry_purge(transport: Any) -> None:
    bodies = [POISON.replace(b'"id":1', f'"id":{i}'.encode()) for i in range(1, 4)]
    _dead_letter(transport, bodies)
    _wait_count(3)

    dumped = _run('dump').splitlines()
    assert len(dumped) == 3
    assert {json.loads(line)['instance_data']['id'] for line in dumped} == {1, 2, 3}
    _wait_count(3)  # dump is not destructive

    out = _run('retry').splitlines()
    assert out[0] == 'Total dead letters: 3'
    assert [line for line in out if line.startswith('Retrying:')] == [
        'Retrying: 1/3',
        'Retrying: 2/3',
        'Retrying: 3/3',
    ]
    retried = [json.loads(line) for line in out if line.startswith('{')]
    assert [body['retries'] for body in retried] == [0, 0, 0]
    assert all(body['expires'] for body in retried), 'a fresh expiry from the configured TTL'
    _wait_count(0)

    # The retried messages are back in the replica's queue and fail (and are dead-lettered) again.
    broker = transport.broker()
    worker = Worker(broker, replica_topology())
    consumer = broker.open_consumer(worker.topology, 50)
    try:
        deadline = time.monotonic() + 10
        while worker.dead_lettered < 3 and time.monotonic() < deadline:
            worker.run_once(consumer, timeout=0.2)
    finally:
        consumer.close()
    assert worker.dead_lettered == 3
    _wait_count(3)

    out = _run('purge').splitlines()
    assert out == ['Total dead letters: 3', 'Purged']
    _wait_count(0)
    assert _run('purge').splitlines() == ['Total dead letters: 0']
    assert not BasicReplica.objects.exists()


def test_dump_does_not_hang_past_the_prefetch(transport: Any) -> None:
    bodies = [POISON.replace(b'"id":1', f'"id":{i}'.encode()) for i in range(60)]
    _dead_letter(transport, bodies)
    _wait_count(60)
    started = time.monotonic()
    assert len(_run('dump').splitlines()) == 60
    assert time.monotonic() - started < 10


@override_settings(CQRS={'transport': 'dj_cqrs.transport.mock.TransportMock', 'queue': 'q'})
def test_unsupported_transport_is_a_command_error() -> None:
    with pytest.raises(CommandError, match='available only for the transports of dj_cqrs'):
        call_command('cqrs_dead_letters', 'dump')
