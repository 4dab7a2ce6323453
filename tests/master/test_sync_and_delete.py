"""``cqrs_sync`` (UPSTREAM_SPEC §4.9) and DELETE events (§4.8)."""

from __future__ import annotations

import datetime as dt
import re

from django.db import transaction
from django.utils import timezone

from dj_cqrs.core import codec
from dj_cqrs.testing import capture_events
from tests.master._helpers import db_revision, db_tx
from tests.testapp import models as m

pytestmark = db_tx


# -- cqrs_sync -----------------------------------------------------------------------------------
def test_sync_of_unsaved_instance_returns_false():
    with capture_events() as events:
        assert m.BasicMaster(name='new').cqrs_sync() is False
    assert events == []


def test_sync_of_deleted_row_returns_false():
    obj = m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.filter(pk=obj.pk).update(name='x')
    stale = m.BasicMaster.objects.get(pk=obj.pk)
    m.BasicMaster.objects.get(pk=obj.pk).delete()
    with capture_events() as events:
        assert stale.cqrs_sync() is False
    assert events == []


def test_sync_publishes_sync_event_with_fresh_db_state_and_no_revision_bump():
    obj = m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.filter(pk=obj.pk).update(name='changed behind our back')
    with capture_events() as events:
        assert obj.cqrs_sync() is True
    assert db_revision(m.BasicMaster, obj.pk) == 0
    (event,) = events
    body = event.to_dict()
    assert body['signal_type'] == 'SYNC'
    assert body['instance_data']['name'] == 'changed behind our back'  # refresh_from_db
    assert body['instance_data']['cqrs_revision'] == 0
    assert event.queue is None
    assert obj.name == 'changed behind our back'


def test_broadcast_sync_is_applied_even_with_equal_revision():
    obj = m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.filter(pk=obj.pk).update(name='fixed')
    m.BasicReplica.objects.filter(pk=obj.pk).update(name='corrupted')
    assert obj.cqrs_sync() is True
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'fixed'


def test_direct_sync_carries_queue_but_not_in_body():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events:
        assert obj.cqrs_sync(queue='other_service') is True
    (event,) = events
    assert event.queue == 'other_service'
    assert 'queue' not in event.to_dict()
    assert b'other_service' not in codec.encode_fields(event.to_dict())


def test_direct_sync_to_another_queue_is_not_applied_here():
    obj = m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.filter(pk=obj.pk).update(name='fixed')
    assert obj.cqrs_sync(queue='other_service') is True
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'a'
    assert obj.cqrs_sync(queue='replica') is True
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'fixed'


def test_only_direct_syncs_replica_ignores_broadcast_sync_and_applies_direct_one():
    obj = m.FilteredMaster.objects.create(name='a')
    m.FilteredMaster.objects.filter(pk=obj.pk).update(name='fixed')
    assert obj.cqrs_sync() is True
    assert m.FilteredReplica.objects.get(pk=obj.pk).name == 'a'
    assert obj.cqrs_sync(queue='replica') is True
    assert m.FilteredReplica.objects.get(pk=obj.pk).name == 'fixed'


def test_sync_with_using_argument():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events:
        assert obj.cqrs_sync(using='default') is True
    assert [e.signal_type for e in events] == ['SYNC']


def test_sync_inside_transaction_publishes_at_commit():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        obj.cqrs_sync()
        assert events == []
    assert [e.signal_type for e in events] == ['SYNC']


# -- delete --------------------------------------------------------------------------------------
def test_delete_payload_shape():
    obj = m.BasicMaster.objects.create(name='a')
    obj.save()
    obj.save()
    pk = obj.pk
    before = timezone.now()
    with capture_events(publish=True) as events:
        obj.delete()
    after = timezone.now()
    (event,) = events
    body = event.to_dict()
    assert body['signal_type'] == 'DELETE'
    assert body['cqrs_id'] == 'basic'
    assert body['instance_pk'] == pk
    assert body['previous_data'] is None
    assert body['meta'] == {}
    data = body['instance_data']
    assert list(data) == ['id', 'cqrs_revision', 'cqrs_updated']
    assert data['id'] == pk
    assert data['cqrs_revision'] == 3  # the stored revision 2, plus one
    assert re.fullmatch(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00', data['cqrs_updated'])
    assert before <= dt.datetime.fromisoformat(data['cqrs_updated']) <= after
    assert not m.BasicReplica.objects.filter(pk=pk).exists()


def test_delete_payload_uses_id_key_for_any_pk_name_and_stringifies_uuid_on_the_wire():
    obj = m.TypedMaster.objects.create(char='x')
    pk = obj.pk
    assert m.TypedReplica.objects.filter(pk=pk).exists()
    with capture_events(publish=True) as events:
        obj.delete()
    (event,) = events.of('typed')
    assert list(event.instance_data)[:2] == ['id', 'cqrs_revision']
    assert event.to_dict()['instance_pk'] == str(pk)
    body = codec.encode_fields(event.to_dict())
    assert f'"instance_data":{{"id":"{pk}","cqrs_revision":1,'.encode() in body
    assert not m.TypedReplica.objects.filter(pk=pk).exists()


def test_delete_payload_custom_data():
    obj = m.FilteredMaster.objects.create(name='visible')
    with capture_events() as events:
        obj.delete()
    (event,) = events
    assert event.instance_data['custom'] == {'name': 'visible'}
    assert list(event.instance_data) == ['id', 'cqrs_revision', 'cqrs_updated', 'custom']


def test_delete_of_filtered_instance_emits_nothing():
    obj = m.FilteredMaster.objects.create(name='hidden')
    with capture_events() as events:
        obj.delete()
    assert events == []


def test_cascaded_master_delete_emits_for_registered_models():
    author = m.Author.objects.create(name='a')
    m.Book.objects.create(title='t', author=author)
    with capture_events() as events:
        author.delete()
    assert [(e.signal_type, e.cqrs_id) for e in events] == [('DELETE', 'author')]


def test_save_then_delete_in_one_transaction_publishes_only_the_delete(cqrs_logs):
    obj = m.BasicMaster.objects.create(name='a')
    pk = obj.pk
    with capture_events() as events, transaction.atomic():
        obj.save()
        obj.save()
        obj.delete()
    assert [(e.signal_type, e.pk, e.instance_data['cqrs_revision']) for e in events] == [('DELETE', pk, 2)]


def test_update_then_queryset_delete_in_one_transaction_publishes_only_the_delete(cqrs_logs):
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        obj.name = 'b'
        obj.save()
        m.BasicMaster.objects.filter(pk=obj.pk).delete()
    assert [(e.signal_type, e.pk) for e in events] == [('DELETE', obj.pk)]
