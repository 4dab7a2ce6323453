"""The lifecycle signals: event_published, event_publish_failed, event_applied, event_skipped,
event_dead_lettered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from dj_cqrs import signals
from dj_cqrs.consumer.worker import Worker, replica_topology
from dj_cqrs.testing import MemoryTransport
from dj_cqrs.transport.base import OutboundMessage, PublishError
from dj_cqrs.transport.memory import MemoryBroker
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    got: list[tuple[str, Any, dict[str, Any]]] = []
    names = [
        'event_published',
        'event_publish_failed',
        'event_applied',
        'event_skipped',
        'event_dead_lettered',
    ]
    receivers = []
    for name in names:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop('signal')
            got.append((_name, sender, kwargs))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((name, receiver))
    yield got
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver)


@override_settings(
    CQRS={'transport': 'dj_cqrs.testing.MemoryTransport', 'queue': 'sigq', 'replica': {'CQRS_MAX_RETRIES': 0}}
)
def test_master_to_replica_signals(received) -> None:
    MemoryTransport.reset()
    worker = Worker(MemoryTransport.broker(), replica_topology())
    consumer = MemoryTransport.broker().open_consumer(worker.topology, 100)
    obj = m.BasicMaster.objects.create(name='a')
    published = [(n, s) for n, s, _ in received if n == 'event_published']
    assert published == [('event_published', MemoryTransport)]
    # The same event twice (a duplicate) and a poison body.
    message = MemoryTransport.broker()
    body = next(k for n, s, k in received if n == 'event_published')['payload']
    from dj_cqrs.transport.bridge import outbound_message

    message.publish([outbound_message(body), OutboundMessage('basic', b'not json')])
    while worker.run_once(consumer, timeout=0.05):
        pass
    consumer.close()
    kinds = [(n, s, k.get('reason')) for n, s, k in received if n != 'event_published']
    assert ('event_applied', m.BasicReplica, None) in kinds
    assert ('event_skipped', m.BasicReplica, 'duplicate revision') in kinds
    dead = [k for n, s, k in received if n == 'event_dead_lettered']
    assert len(dead) == 1 and dead[0]['payload'] is None and dead[0]['body'] == b'not json'
    assert dead[0]['reason'].startswith('body is not JSON')
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'a'


class DownBroker(MemoryBroker):
    def publish(self, messages: Any) -> Any:
        raise PublishError('broker unreachable', messages)


class DownTransport(MemoryTransport):
    @classmethod
    def create_broker(cls) -> Any:
        return DownBroker()


@override_settings(
    CQRS={
        'transport': 'tests.replica.test_signals.DownTransport',
        'queue': 'sigq',
        'master': {'CQRS_OUTBOX': False},
    }
)
def test_publish_failed_signal(received) -> None:
    m.BasicMaster.objects.create(name='lost')
    failed = [(s, k['error']) for n, s, k in received if n == 'event_publish_failed']
    assert failed == [(DownTransport, 'broker unreachable')]


@override_settings(CQRS={'transport': 'dj_cqrs.testing.MemoryTransport', 'queue': 'early'})
def test_memory_transport_keeps_events_published_before_the_first_drain() -> None:
    from dj_cqrs.transport.bridge import BrokerTransport

    MemoryTransport.reset()
    BrokerTransport.reset_all()
    obj = m.BasicMaster.objects.create(name='early bird')
    assert not m.BasicReplica.objects.exists()
    assert MemoryTransport.drain() == 1
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'early bird'


def test_every_log_line_of_an_event_carries_its_fields(caplog) -> None:
    import logging

    from dj_cqrs.controller import consumer
    from dj_cqrs.log_context import event_context
    from dj_cqrs.testing import wire_roundtrip

    caplog.set_level(logging.INFO, 'django-cqrs')
    data = {
        'id': 3,
        'name': 'n',
        'counter': 0,
        'cqrs_revision': 4,
        'cqrs_updated': '2024-05-01 10:00:00+00:00',
    }
    from dj_cqrs.payload import TransportPayload

    payload = wire_roundtrip(TransportPayload('SAVE', 'basic', data, 3, correlation_id='c-3'))
    with event_context(payload):
        consumer.consume(payload)
        consumer.consume(payload)  # a duplicate: logged by the replica manager
    records = [r for r in caplog.records if 'duplicate' in r.getMessage()]
    assert records, caplog.text
    record = records[0]
    assert (record.cqrs_id, record.pk, record.revision, record.correlation_id) == ('basic', 3, 4, 'c-3')
    outside = logging.LogRecord('django-cqrs', logging.INFO, __file__, 1, 'x', None, None)
    logging.getLogger('django-cqrs').filters[0].filter(outside)
    assert outside.cqrs_id is None
