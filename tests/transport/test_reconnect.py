"""The consumer survives the broker closing its connection (RabbitMQ, real broker)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection
from django.test import override_settings

from dj_cqrs.consumer.worker import Worker, replica_topology
from dj_cqrs.payload import TransportPayload
from dj_cqrs.transport.bridge import outbound_message
from dj_cqrs.transport.rabbitmq import RabbitMQBroker
from tests.support import services
from tests.testapp.models import BasicReplica

pytestmark = pytest.mark.django_db(transaction=True)


def _payload(pk: int) -> TransportPayload:
    data = {
        'id': pk,
        'name': f'n{pk}',
        'counter': 0,
        'cqrs_revision': 0,
        'cqrs_updated': '2024-05-01 10:00:00+00:00',
    }
    return TransportPayload('SAVE', 'basic', data, pk)


def _wait(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_consumer_reconnects_after_the_broker_cuts_it(caplog: pytest.LogCaptureFixture) -> None:
    name = f'cqrs_rc_{uuid.uuid4().hex[:8]}'
    with (
        services.rabbit_vhost('cqrs_rc') as vhost,
        override_settings(
            CQRS={'transport': 'dj_cqrs.transport.RabbitMQTransport', 'queue': f'{name}_q', 'exchange': name}
        ),
    ):
        broker = RabbitMQBroker(url=services.amqp_url(vhost), exchange=name)
        worker = Worker(broker, replica_topology(), reconnect_delay=0.2)

        def run() -> None:
            try:
                worker.run()
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            time.sleep(1.0)  # the queue is declared by the consumer
            broker.publish([outbound_message(_payload(1))])
            assert _wait(lambda: BasicReplica.objects.filter(pk=1).exists())

            assert services.close_rabbit_connections(vhost, 'consumer') >= 1
            broker.publish([outbound_message(_payload(2))])
            assert _wait(lambda: BasicReplica.objects.filter(pk=2).exists()), 'applied after the reconnect'
            assert 'AMQP connection error. Reconnecting...' in caplog.text
            # (The row is visible at the commit; the worker counts it after the ack that follows.)
            assert _wait(lambda: worker.applied == 2, timeout=5), worker.applied
        finally:
            worker.stop()
            thread.join(10)
            broker.close()
        assert not thread.is_alive()


def _kill_redis_clients(name: str) -> int:
    import redis

    client = redis.Redis(host='127.0.0.1', port=6379)
    try:
        killed = 0
        for entry in client.client_list():
            if entry.get('name') == name:
                client.client_kill_filter(_id=entry['id'])
                killed += 1
        return killed
    finally:
        client.close()


def test_kombu_consumer_reconnects_after_redis_cuts_it(caplog: pytest.LogCaptureFixture) -> None:
    import redis

    from dj_cqrs.transport.kombu import KombuBroker

    name = f'cqrs_rcr_{uuid.uuid4().hex[:8]}'
    with override_settings(
        CQRS={'transport': 'dj_cqrs.transport.kombu.KombuTransport', 'queue': f'{name}_q', 'exchange': name}
    ):
        broker = KombuBroker(
            url='redis://127.0.0.1:6379/0', exchange=name, transport_options={'client_name': name}
        )
        worker = Worker(broker, replica_topology(), reconnect_delay=0.2)

        def run() -> None:
            try:
                worker.run()
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            time.sleep(1.0)
            broker.publish([outbound_message(_payload(1))])
            assert _wait(lambda: BasicReplica.objects.filter(pk=1).exists())
            assert _kill_redis_clients(name) >= 1
            broker.publish([outbound_message(_payload(2))])
            assert _wait(lambda: BasicReplica.objects.filter(pk=2).exists()), 'applied after the reconnect'
            assert _wait(lambda: worker.applied == 2, timeout=5), worker.applied  # counted after the ack
        finally:
            worker.stop()
            thread.join(10)
            broker.close()
            client = redis.Redis(host='127.0.0.1', port=6379)
            for key in client.scan_iter(f'*{name}*'):
                client.delete(key)
            client.close()
        assert not thread.is_alive()
