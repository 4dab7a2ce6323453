"""``cqrs_relay`` drains an outage's backlog through the real RabbitMQ transport (pipelined confirms)."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from django.core.management import call_command
from django.test import override_settings

from dj_cqrs.core.routing import Topology
from dj_cqrs.master import outbox, publisher
from dj_cqrs.master.outbox import OutboxEvent
from dj_cqrs.transport.rabbitmq import RabbitMQBroker
from tests.support import services
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

BACKLOG = 10_000


def test_relay_drains_a_backlog_of_ten_thousand_events() -> None:
    name = f'cqrs_relay_{uuid.uuid4().hex[:8]}'
    with (
        services.rabbit_vhost('cqrs_relay') as vhost,
        override_settings(
            CQRS={
                'transport': 'dj_cqrs.transport.RabbitMQTransport',
                'url': services.amqp_url(vhost),
                'exchange': name,
            }
        ),
    ):
        broker = RabbitMQBroker(url=services.amqp_url(vhost), exchange=name)
        reader = broker.open_consumer(Topology(name, 'sink', 'sink_dlq', ('basic',)), 0)
        try:
            # The outage: the breaker is open, so every save leaves its event in the outbox.
            publisher._breaker['open_until'] = time.monotonic() + 3600
            m.BasicMaster.cqrs.bulk_create([m.BasicMaster(name=f'n{i}') for i in range(BACKLOG)])
            assert OutboxEvent.objects.count() == BACKLOG
            publisher._breaker['open_until'] = 0.0

            out = io.StringIO()
            started = time.monotonic()
            call_command('cqrs_relay', '--once', stdout=out)
            elapsed = time.monotonic() - started
            assert out.getvalue().strip() == f'{BACKLOG} event(s) published, 0 skipped.'
            assert not OutboxEvent.objects.exists()

            got = set()
            deadline = time.monotonic() + 60
            while len(got) < BACKLOG and time.monotonic() < deadline:
                batch = reader.fetch(1000, 1.0)
                reader.ack(batch)
                got.update(d.body for d in batch)
            assert len(got) == BACKLOG, 'every event reached the broker'
            print(f'\ncqrs_relay: {BACKLOG} events in {elapsed:.2f} s ({BACKLOG / elapsed:.0f} events/s)')
        finally:
            publisher._breaker['open_until'] = 0.0
            outbox.delivered.take()
            reader.close()
            broker.close()
