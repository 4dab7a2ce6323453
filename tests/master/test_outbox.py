"""The transactional outbox: rows written with the change, fast-path delivery, relay, catch-up."""

from __future__ import annotations

import datetime as dt
import threading
from unittest import mock

import pytest
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from dj_cqrs.master import outbox, publisher, relay
from dj_cqrs.master.outbox import OutboxEvent
from dj_cqrs.testing import capture_events
from dj_cqrs.transport.base import PublishError
from dj_cqrs.transport.bridge import BrokerTransport
from dj_cqrs.transport.memory import MemoryBroker
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True, databases=['default', 'replica_db'])


@pytest.fixture(autouse=True)
def _fresh_outbox_state():
    outbox.delivered.take()
    publisher._breaker['open_until'] = 0.0
    relay._next_catch_up.clear()
    yield
    outbox.delivered.take()
    publisher._breaker['open_until'] = 0.0


class Broker:
    """Stands in for ``producer.produce``: records payloads, fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.published: list = []
        self.lock = threading.Lock()

    def __call__(self, payload):
        if self.down:
            return False
        with self.lock:
            self.published.append(payload)
        return True


@pytest.fixture
def broker():
    fake = Broker()
    with mock.patch('dj_cqrs.controller.producer.produce', fake):
        yield fake


def test_the_row_is_written_in_the_same_transaction(broker):
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='a')
        rows = list(OutboxEvent.objects.values_list('cqrs_id', 'signal_type', 'instance_pk'))
        assert rows == [('basic', 'SAVE', str(obj.pk))]
        assert broker.published == []
    assert [p.pk for p in broker.published] == [obj.pk]
    outbox.delivered.flush()  # (the flush thread may have deleted it already)
    assert not OutboxEvent.objects.exists()


def test_rollback_leaves_no_row_and_no_event(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        m.BasicMaster.objects.create(name='a')
        raise RuntimeError
    assert not OutboxEvent.objects.exists()
    assert broker.published == []


def test_one_row_per_object_per_transaction(broker):
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='a')
        for i in range(5):
            obj.name = f'v{i}'
            obj.save()
        assert OutboxEvent.objects.count() == 1
    assert len(broker.published) == 1
    assert broker.published[0].instance_data['name'] == 'v4'


def test_broker_down_keeps_the_rows_and_the_relay_delivers_them_in_order(broker):
    broker.down = True
    obj = m.BasicMaster.objects.create(name='a')
    obj.name = 'b'
    obj.save()
    other = m.BasicMaster.objects.create(name='x')
    other_pk = other.pk
    other.delete()
    assert broker.published == []
    assert list(OutboxEvent.objects.order_by('id').values_list('signal_type', flat=True)) == [
        'SAVE',
        'SAVE',
        'SAVE',
        'DELETE',
    ]
    broker.down = False
    result = relay.drain_all()
    assert (result.published, result.skipped, result.failed) == (3, 1, 0)
    assert not OutboxEvent.objects.exists()
    kinds = [(p.signal_type, p.pk) for p in broker.published]
    assert kinds == [('SAVE', obj.pk), ('SAVE', obj.pk), ('DELETE', other_pk)], (
        'the SAVE of a deleted row is skipped'
    )
    # Late serialization: both SAVE rows of obj publish its committed state.
    assert [p.instance_data['name'] for p in broker.published[:2]] == ['b', 'b']
    assert broker.published[0].instance_data['cqrs_revision'] == 1


class FlakyBroker(MemoryBroker):
    down = False

    def publish(self, messages):
        if FlakyBroker.down:
            raise PublishError('broker unreachable', messages)
        return super().publish(messages)


class FlakyTransport(BrokerTransport):
    @classmethod
    def create_broker(cls):
        return FlakyBroker()


@override_settings(CQRS={'transport': 'tests.master.test_outbox.FlakyTransport', 'queue': 'replica'})
def test_a_broker_that_does_not_confirm_opens_the_breaker_so_saves_do_not_wait():
    FlakyBroker.down = True
    try:
        m.BasicMaster.objects.create(name='a')
        assert publisher._breaker['open_until'] > 0
        FlakyBroker.down = False
        with mock.patch.object(FlakyBroker, 'publish', side_effect=AssertionError('not called')):
            m.BasicMaster.objects.create(name='b')  # breaker open: left to the relay
        assert OutboxEvent.objects.count() == 2
        assert relay.drain_all().published == 2
        assert not OutboxEvent.objects.exists()
    finally:
        FlakyBroker.down = False


def test_a_patched_produce_that_fails_keeps_the_row_but_trips_nothing(broker):
    broker.down = True
    m.BasicMaster.objects.create(name='a')
    assert publisher._breaker['open_until'] == 0.0
    broker.down = False
    m.BasicMaster.objects.create(name='b')
    assert [p.instance_data['name'] for p in broker.published] == ['b']
    outbox.delivered.flush()
    assert OutboxEvent.objects.count() == 1


def test_delete_rows_carry_their_payload(broker):
    obj = m.FilteredMaster.objects.create(name='gone')
    outbox.delivered.flush()
    broker.published.clear()
    broker.down = True
    pk = obj.pk
    obj.delete()
    row = OutboxEvent.objects.get()
    assert row.signal_type == 'DELETE'
    assert '"custom":{"name":"gone"}' in row.body
    broker.down = False
    relay.drain_all()
    (payload,) = broker.published
    assert payload.signal_type == 'DELETE'
    assert payload.instance_data['id'] == pk
    assert payload.instance_data['custom'] == {'name': 'gone'}


def test_tracked_previous_data_survives_in_the_row(broker):
    broker.down = True
    obj = m.TrackedMaster.objects.create(char_field='old')
    broker.down = False
    relay.drain_all()
    broker.published.clear()
    broker.down = True
    obj.char_field = 'new'
    obj.save()
    broker.down = False
    relay.drain_all()
    (payload,) = broker.published
    assert payload.previous_data['char_field'] == 'old'
    assert payload.instance_data['char_field'] == 'new'


def test_the_row_lives_on_the_models_database(broker):
    broker.down = True
    m.OtherDbMaster.objects.create(name='elsewhere')
    assert not OutboxEvent.objects.using('default').exists()
    assert OutboxEvent.objects.using('replica_db').count() == 1
    broker.down = False
    assert relay.drain_all('replica_db').published == 1


@override_settings(
    CQRS={
        'transport': 'dj_cqrs.testing.LoopbackTransport',
        'queue': 'replica',
        'master': {'CQRS_OUTBOX': False},
    }
)
def test_outbox_off_is_the_upstream_behaviour(broker):
    broker.down = True
    m.BasicMaster.objects.create(name='lost')
    assert not OutboxEvent.objects.exists(), 'without the outbox a failed publish is gone'


def test_catch_up_drains_old_rows_after_a_success(broker):
    broker.down = True
    for i in range(3):
        m.BasicMaster.objects.create(name=f'old{i}')
    OutboxEvent.objects.update(created_at=timezone.now() - dt.timedelta(minutes=5))
    broker.down = False
    publisher._breaker['open_until'] = 0.0
    m.BasicMaster.objects.create(name='new')
    names = [p.instance_data['name'] for p in broker.published]
    assert names[0] == 'new'
    assert sorted(names[1:]) == ['old0', 'old1', 'old2']
    outbox.delivered.flush()
    assert not OutboxEvent.objects.exists()


def test_backlog_reports_count_and_oldest_age(broker):
    assert outbox.backlog() == outbox.Backlog(0, None)
    broker.down = True
    m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.create(name='b')
    OutboxEvent.objects.filter(id=OutboxEvent.objects.order_by('id').first().id).update(
        created_at=timezone.now() - dt.timedelta(seconds=90)
    )
    state = outbox.backlog()
    assert state.count == 2
    assert 89 < state.oldest_age < 120


def test_two_relays_at_once_deliver_every_event_and_lose_none(broker):
    broker.down = True
    objs = [m.BasicMaster(name=f'n{i}') for i in range(300)]
    for obj in objs:
        obj.save()
    assert OutboxEvent.objects.count() == 300
    broker.down = False
    results = []

    def run():
        try:
            results.append(relay.drain_all(batch=20))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not OutboxEvent.objects.exists()
    published = sorted(p.pk for p in broker.published)
    assert set(published) == {o.pk for o in objs}, 'none lost'
    assert sum(r.published for r in results) == len(published)
    assert all(r.published > 0 for r in results), 'SKIP LOCKED lets both relays work'


def test_capture_events_sees_outbox_events_without_delivering_them():
    with capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert [e.signal_type for e in events] == ['SAVE']
    outbox.delivered.flush()
    assert not OutboxEvent.objects.exists(), 'a captured event counts as delivered'
