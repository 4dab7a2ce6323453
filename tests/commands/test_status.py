"""``manage.py cqrs_status`` on both sides: the outbox backlog of a master, and the queues, dead
letters, delay queues and last changes of a replica (MemoryTransport and RabbitMQ)."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from dj_cqrs.consumer.worker import Worker, replica_topology
from dj_cqrs.core import codec
from dj_cqrs.master import outbox
from dj_cqrs.ops import status as ops_status
from dj_cqrs.testing import MemoryTransport
from dj_cqrs.transport import get_transport
from dj_cqrs.transport.base import OutboundMessage
from tests.support import services
from tests.testapp.models import BasicReplica

pytestmark = pytest.mark.django_db(transaction=True, databases='__all__')

T0 = '2024-05-01 10:00:00+00:00'


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command('cqrs_status', *args, stdout=out)
    return out.getvalue()


def _json(*args: str) -> dict[str, Any]:
    return json.loads(_run('--json', *args))  # type: ignore[no-any-return]


def _save_body(pk: int, revision: int, updated: str = T0) -> bytes:
    data = {
        'id': pk,
        'name': f'n{pk}',
        'counter': revision,
        'cqrs_revision': revision,
        'cqrs_updated': updated,
    }
    return codec.encode_fields(
        {
            'signal_type': 'SAVE',
            'cqrs_id': 'basic',
            'instance_data': data,
            'instance_pk': pk,
            'previous_data': None,
            'correlation_id': None,
            'expires': None,
            'retries': 0,
        }
    )


# -- master -------------------------------------------------------------------------------------
def test_master_backlog_count_age_and_staleness() -> None:
    first = outbox.record('default', 'basic', 'SAVE', 1)
    outbox.record('default', 'basic', 'SAVE', 2)
    old = timezone.now() - dt.timedelta(seconds=900)
    outbox.OutboxEvent.objects.filter(id=first).update(created_at=old)

    data = _json('--master')
    assert data['replica'] is None
    assert 'basic' in data['master']['cqrs_ids']
    outboxes = {o['database']: o for o in data['master']['outboxes']}
    assert set(outboxes) == {'default', 'replica_db'}, 'every database with the outbox table'
    assert outboxes['default']['count'] == 2
    assert outboxes['default']['oldest_age'] >= 899
    assert outboxes['default']['stale'] is True
    assert outboxes['replica_db'] == {
        'database': 'replica_db',
        'count': 0,
        'oldest_age': None,
        'stale': False,
        'error': None,
    }
    assert data['master']['backlog'] == 2

    text = _run('--master', '--database', 'default')
    assert 'outbox default: 2 undelivered, the oldest 15 min old' in text
    assert 'CQRS_OUTBOX_WARN_AGE = 300 s' in text
    assert 'replica_db' not in text


def test_master_empty_outbox_and_warn_age_setting() -> None:
    outbox.record('default', 'basic', 'SAVE', 1)
    with override_settings(
        CQRS={
            'transport': 'dj_cqrs.testing.LoopbackTransport',
            'queue': 'replica',
            'master': {'CQRS_OUTBOX_WARN_AGE': 3600},
        }
    ):
        data = _json('--master', '--database', 'default')
    (default,) = data['master']['outboxes']
    assert default['count'] == 1 and default['stale'] is False
    assert data['master']['warn_age'] == 3600
    outbox.OutboxEvent.objects.all().delete()
    assert 'outbox default: empty' in _run('--master', '--database', 'default')


def test_bad_arguments() -> None:
    with pytest.raises(CommandError, match="Unknown database alias 'nope'"):
        _run('--database', 'nope')
    with pytest.raises(CommandError, match='Wrong CQRS ID: nope!'):
        _run('--cqrs-id', 'nope')
    with pytest.raises(CommandError):
        _run('--master', '--replica')


# -- replica ------------------------------------------------------------------------------------
def test_replica_without_a_broker_transport_reports_and_fails() -> None:
    """LoopbackTransport (tests.settings) has no queues: the rest is shown, then the command fails."""
    out = io.StringIO()
    with pytest.raises(CommandError, match=r'could not be read: broker: .*has no broker to ask'):
        call_command('cqrs_status', '--replica', '--json', stdout=out)
    data = json.loads(out.getvalue())
    assert data['replica']['queue'] == 'replica'
    assert {m['cqrs_id'] for m in data['replica']['models']} >= {'basic', 'typed', 'other_db'}

    data = _json('--replica', '--no-broker', '--cqrs-id', 'basic')
    assert data['replica']['error'] is None
    assert [m['cqrs_id'] for m in data['replica']['models']] == ['basic']


@pytest.fixture
def memory_replica() -> Iterator[Any]:
    name = f'st_{uuid.uuid4().hex[:8]}'
    config = {
        'transport': 'dj_cqrs.testing.MemoryTransport',
        'queue': name,
        'replica': {'CQRS_MAX_RETRIES': 1, 'CQRS_RETRY_DELAY': 2},
    }
    MemoryTransport.reset()
    with override_settings(CQRS=config):
        yield get_transport()
    MemoryTransport.reset()


def test_replica_queue_dead_letters_delay_queues_and_last_applied(memory_replica: Any) -> None:
    broker = memory_replica.broker()
    broker.open_consumer(replica_topology(), 10).close()  # declares and binds the queues
    broker.publish(
        [
            OutboundMessage('basic', _save_body(1, 0)),
            OutboundMessage('basic', _save_body(2, 3, '2024-05-01 11:00:00+00:00')),
            OutboundMessage('basic', b'{"not": "an event"'),
        ]
    )
    data = _json('--replica', '--cqrs-id', 'basic')['replica']
    queue = data['queue_status']
    assert data['queue'] == queue['name'] == broker_queue(memory_replica)
    assert queue['messages'] == 3
    assert queue['consumers'] is None, 'the in-memory broker cannot count consumers'
    assert data['dead_letters'] == {
        'name': f'dead_letter_{queue["name"]}',
        'messages': 0,
        'consumers': None,
        'delay_ms': None,
    }
    assert [(d['name'], d['delay_ms']) for d in data['delay_queues']] == [
        (f'{queue["name"]}.delay.2000', 2000)
    ]
    (basic,) = data['models']
    assert basic['rows'] == 0 and basic['last_updated'] is None

    assert MemoryTransport.drain() == 3
    data = _json('--replica', '--cqrs-id', 'basic')['replica']
    assert data['queue_status']['messages'] == 0
    assert data['dead_letters']['messages'] == 1
    (basic,) = data['models']
    assert basic['rows'] == 2
    assert (basic['last_pk'], basic['last_revision']) == (2, 3)
    assert basic['last_updated'].startswith('2024-05-01T11:00:00')
    assert basic['database'] == 'default'

    BasicReplica.cqrs.delete_instance(
        {'id': 2, 'cqrs_revision': 4, 'cqrs_updated': '2024-05-01 12:00:00+00:00'}
    )
    (basic,) = _json('--replica', '--cqrs-id', 'basic')['replica']['models']
    assert basic['rows'] == 1 and basic['deletes'] == 1 and basic['last_deleted_at']

    text = _run('--replica', '--cqrs-id', 'basic')
    assert f'queue {queue["name"]}: 0 ready, ? consumer(s)' in text
    assert f'dead letters dead_letter_{queue["name"]}: 1 (see `manage.py cqrs_dead_letters dump`)' in text
    assert f'delay queue {queue["name"]}.delay.2000: 0 waiting' in text
    assert 'basic: 1 row(s), last change applied: pk 1 revision 0' in text
    assert '1 delete tombstone(s)' in text


def broker_queue(transport: Any) -> str:
    from dj_cqrs.conf import cqrs_settings

    return cqrs_settings.queue  # type: ignore[return-value]


def test_custom_retry_delays_each_get_a_delay_queue(monkeypatch: Any) -> None:
    monkeypatch.setattr(BasicReplica, 'get_cqrs_retry_delay', staticmethod(lambda retries: 2**retries))
    config = {
        'transport': 'dj_cqrs.testing.MemoryTransport',
        'queue': 'q',
        'replica': {'CQRS_MAX_RETRIES': 4},
    }
    with override_settings(CQRS=config):
        assert ops_status.retry_delays([BasicReplica]) == [1000, 2000, 4000, 8000]


def test_both_sides_by_default_text() -> None:
    with override_settings(
        CQRS={'transport': 'dj_cqrs.testing.MemoryTransport', 'queue': f'st_{uuid.uuid4().hex[:6]}'}
    ):
        text = _run()
    assert text.startswith('Master: ')
    assert '\nReplica: queue st_' in text


# -- RabbitMQ -----------------------------------------------------------------------------------
@pytest.fixture
def rabbit_replica() -> Iterator[Any]:
    name = f'st_{uuid.uuid4().hex[:8]}'
    with services.rabbit_vhost('cqrs_status') as vhost:
        config = {
            'transport': 'dj_cqrs.transport.RabbitMQTransport',
            'url': services.amqp_url(vhost),
            'queue': name,
            'exchange': name,
            'replica': {'CQRS_MAX_RETRIES': 1, 'CQRS_RETRY_DELAY': 1},
        }
        with override_settings(CQRS=config):
            transport = get_transport()
            yield transport
            transport.clean_connection()


def _wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_replica_on_rabbitmq_counts_messages_consumers_and_dead_letters(rabbit_replica: Any) -> None:
    broker = rabbit_replica.broker()
    worker = Worker(broker, replica_topology())
    consumer = broker.open_consumer(worker.topology, 10)
    try:
        data = _json('--replica')['replica']
        assert data['queue_status']['consumers'] == 1
        assert data['dead_letters']['messages'] == 0
        # One delay queue per delay the replica models' hooks return (other test modules register
        # replicas with delays of their own).
        delay = next(d for d in data['delay_queues'] if d['delay_ms'] == 1000)
        assert delay['messages'] == 0

        broker.publish([OutboundMessage('basic', _save_body(7, 5)), OutboundMessage('basic', b'garbage')])
        handled = 0
        deadline = time.monotonic() + 10
        while handled < 2 and time.monotonic() < deadline:
            handled += worker.run_once(consumer, timeout=0.5)
        assert handled == 2
        data = _wait_for(lambda: (d := _json('--replica')['replica'])['dead_letters']['messages'] == 1 and d)
        assert data, 'the dead letter is counted'
        assert data['queue_status']['messages'] == 0
        basic = next(m for m in data['models'] if m['cqrs_id'] == 'basic')
        assert (basic['rows'], basic['last_pk'], basic['last_revision']) == (1, 7, 5)
    finally:
        consumer.close()
    data = _wait_for(lambda: (d := _json('--replica')['replica'])['queue_status']['consumers'] == 0 and d)
    assert data, 'the consumer is gone'
    text = _run('--replica', '--cqrs-id', 'basic')
    assert f'queue {data["queue"]}: 0 ready, 0 consumer(s)' in text


def test_unreachable_rabbitmq_is_reported() -> None:
    config = {
        'transport': 'dj_cqrs.transport.RabbitMQTransport',
        'url': 'amqp://guest:guest@127.0.0.1:1/?connection_attempts=1&socket_timeout=1',
        'queue': 'st_down',
    }
    out = io.StringIO()
    with override_settings(CQRS=config), pytest.raises(CommandError, match='broker: TransportError'):
        call_command('cqrs_status', '--replica', stdout=out)
    assert 'broker: ERROR TransportError' in out.getvalue()
    assert 'guest:guest' not in out.getvalue(), 'credentials never shown'


# -- Prometheus metrics (dj_cqrs.metrics) -----------------------------------------------------------
@pytest.fixture
def registry() -> Iterator[Any]:
    prometheus_client = pytest.importorskip('prometheus_client')
    from dj_cqrs import metrics

    reg = prometheus_client.CollectorRegistry()
    metrics.install(reg)
    yield reg
    metrics.uninstall(reg)


def test_metrics_count_the_lifecycle_signals(registry: Any, memory_replica: Any) -> None:
    from dj_cqrs import metrics
    from tests.testapp.models import BasicMaster

    assert metrics.install(registry) is metrics.install(registry), 'installed once per registry'
    broker = memory_replica.broker()
    broker.open_consumer(replica_topology(), 10).close()
    obj = BasicMaster.objects.create(name='m')
    assert registry.get_sample_value('dj_cqrs_events_published_total', {'cqrs_id': 'basic'}) == 1
    assert MemoryTransport.drain() == 1
    assert registry.get_sample_value('dj_cqrs_events_applied_total', {'cqrs_id': 'basic'}) == 1

    stale = _save_body(obj.pk, obj.cqrs_revision, '2020-01-01 00:00:00+00:00')
    broker.publish([OutboundMessage('basic', stale), OutboundMessage('basic', b'\xff')])
    assert MemoryTransport.drain() == 2
    assert (
        registry.get_sample_value(
            'dj_cqrs_events_skipped_total', {'cqrs_id': 'basic', 'reason': 'duplicate revision'}
        )
        == 1
    )
    assert registry.get_sample_value('dj_cqrs_events_dead_lettered_total', {'cqrs_id': '-'}) == 1


def test_metrics_outbox_gauges_and_view(registry: Any, rf: Any) -> None:
    from dj_cqrs import metrics

    outbox.record('default', 'basic', 'SAVE', 1)
    assert registry.get_sample_value('dj_cqrs_outbox_backlog', {'database': 'default'}) == 1
    assert registry.get_sample_value('dj_cqrs_outbox_backlog', {'database': 'replica_db'}) == 0
    assert registry.get_sample_value('dj_cqrs_outbox_oldest_age_seconds', {'database': 'default'}) >= 0
    response = metrics.metrics_view(rf.get('/metrics'), registry=registry)
    assert response.status_code == 200
    assert b'dj_cqrs_outbox_backlog{database="default"} 1.0' in response.content


def test_metrics_uninstall_disconnects(registry: Any) -> None:
    from dj_cqrs import metrics, signals

    metrics.uninstall(registry)
    signals.event_applied.send(None, payload=None)
    assert registry.get_sample_value('dj_cqrs_events_applied_total', {'cqrs_id': '-'}) is None
    metrics.install(registry)  # for the fixture's uninstall
