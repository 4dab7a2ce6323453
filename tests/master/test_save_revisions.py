"""Revision handling of master saves (UPSTREAM_SPEC §4.2) and the produce test seam (§1)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction
from django.db.models import F
from django.test import override_settings

from dj_cqrs.constants import SignalType
from dj_cqrs.dataclasses import TransportPayload
from dj_cqrs.testing import capture_events
from tests.master._helpers import cqrs_with, db_revision, db_tx
from tests.testapp import models as m

pytestmark = db_tx


def test_create_has_revision_zero_and_publishes_save():
    with capture_events() as events:
        obj = m.BasicMaster.objects.create(name='a', counter=3)

    assert obj.cqrs_revision == 0
    assert db_revision(m.BasicMaster, obj.pk) == 0
    assert len(events) == 1
    body = events[0].to_dict()
    assert body['signal_type'] == 'SAVE'
    assert body['cqrs_id'] == 'basic'
    assert body['instance_pk'] == obj.pk
    data = body['instance_data']
    assert {k: data[k] for k in ('id', 'name', 'counter', 'cqrs_revision')} == {
        'id': obj.pk,
        'name': 'a',
        'counter': 3,
        'cqrs_revision': 0,
    }
    assert data['cqrs_updated'] == str(m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated)


def test_full_update_increments_revision_by_one_in_the_database():
    obj = m.BasicMaster.objects.create(name='a')
    for expected in (1, 2, 3):
        with capture_events() as events:
            obj.name = f'v{expected}'
            obj.save()
        assert db_revision(m.BasicMaster, obj.pk) == expected
        assert [e.instance_data['cqrs_revision'] for e in events] == [expected]
        assert events[0].instance_data['name'] == f'v{expected}'


def test_revision_is_an_int_after_autocommit_save():
    obj = m.BasicMaster.objects.create(name='a')
    assert type(obj.cqrs_revision) is int
    obj.save()
    assert type(obj.cqrs_revision) is int
    assert obj.cqrs_revision == 1


def test_revision_is_an_int_after_save_inside_a_transaction():
    obj = m.BasicMaster.objects.create(name='a')
    with transaction.atomic():
        obj.save()
        assert type(obj.cqrs_revision) is int
        assert obj.cqrs_revision == 1
        obj.save()
        assert type(obj.cqrs_revision) is int
        assert obj.cqrs_revision == 1
    assert obj.cqrs_revision == 1


def test_revision_is_an_int_after_commit():
    obj = m.BasicMaster.objects.create(name='a')
    with transaction.atomic():
        obj.save()
        obj.save()
    assert type(obj.cqrs_revision) is int
    assert obj.cqrs_revision == 1
    assert db_revision(m.BasicMaster, obj.pk) == 1


def test_revision_bump_is_db_side_f_expression():
    """Two stale Python objects of one row: each save adds one to the stored value."""
    obj = m.BasicMaster.objects.create(name='a')
    first = m.BasicMaster.objects.get(pk=obj.pk)
    second = m.BasicMaster.objects.get(pk=obj.pk)
    first.save()
    second.save()
    assert db_revision(m.BasicMaster, obj.pk) == 2
    assert (first.cqrs_revision, second.cqrs_revision) == (1, 2)


def test_update_fields_without_flag_emits_nothing_and_keeps_revision():
    obj = m.BasicMaster.objects.create(name='a')
    updated_before = m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated
    with capture_events() as events:
        obj.name = 'b'
        obj.save(update_fields=['name'])

    assert events == []
    row = m.BasicMaster.objects.get(pk=obj.pk)
    assert (row.name, row.cqrs_revision, row.cqrs_updated) == ('b', 0, updated_before)
    assert obj.cqrs_revision == 0
    # The replica did not hear about it.
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'a'


def test_update_fields_with_update_cqrs_fields_flag():
    obj = m.BasicMaster.objects.create(name='a')
    updated_before = m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated
    with capture_events(publish=True) as events:
        obj.name = 'b'
        obj.counter = 99  # not in update_fields: neither stored nor published
        obj.save(update_fields=['name'], update_cqrs_fields=True)

    row = m.BasicMaster.objects.get(pk=obj.pk)
    assert (row.name, row.counter, row.cqrs_revision) == ('b', 0, 1)
    assert row.cqrs_updated > updated_before
    assert obj.cqrs_revision == 1
    assert len(events) == 1
    assert events[0].instance_data['cqrs_revision'] == 1
    assert events[0].instance_data['name'] == 'b'
    replica = m.BasicReplica.objects.get(pk=obj.pk)
    assert (replica.name, replica.cqrs_revision) == ('b', 1)


def test_update_fields_with_auto_update_fields_setting():
    obj = m.BasicMaster.objects.create(name='a')
    with override_settings(CQRS=cqrs_with(CQRS_AUTO_UPDATE_FIELDS=True)):
        with capture_events() as events:
            obj.name = 'b'
            obj.save(update_fields=['name'])
        assert db_revision(m.BasicMaster, obj.pk) == 1
        assert [e.instance_data['cqrs_revision'] for e in events] == [1]

        # The explicit flag still wins over the setting.
        with capture_events() as events:
            obj.name = 'c'
            obj.save(update_fields=['name'], update_cqrs_fields=False)
        assert events == []
        assert db_revision(m.BasicMaster, obj.pk) == 1


def test_update_fields_listing_cqrs_revision_emits():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events:
        obj.name = 'b'
        obj.cqrs_revision = F('cqrs_revision') + 1
        obj.save(update_fields=['name', 'cqrs_revision'])
    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert len(events) == 1
    assert events[0].instance_data['cqrs_revision'] == 1


def test_empty_update_fields_saves_nothing_and_emits_nothing():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events:
        obj.name = 'changed'
        obj.save(update_fields=[])
    assert events == []
    row = m.BasicMaster.objects.get(pk=obj.pk)
    assert (row.name, row.cqrs_revision) == ('a', 0)
    # No F() is left behind: the next full save bumps by exactly one.
    assert type(obj.cqrs_revision) is int
    obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 1


def test_f_expression_on_user_field_is_published_resolved():
    obj = m.BasicMaster.objects.create(name='a', counter=5)
    with capture_events() as events:
        obj.counter = F('counter') + 10
        obj.save()
    assert events[0].instance_data['counter'] == 15
    assert events[0].instance_data['cqrs_revision'] == 1
    assert obj.counter == 15
    assert m.BasicMaster.objects.get(pk=obj.pk).counter == 15


def test_saves_outside_transaction_each_emit():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events:
        obj.save()
        obj.save()
        obj.save()
    assert [e.instance_data['cqrs_revision'] for e in events] == [1, 2, 3]


def test_raw_master_mixin_with_explicit_register_publishes():
    with capture_events() as events:
        obj = m.RawMaster.objects.create(name='raw')
    assert [(e.signal_type, e.cqrs_id, e.pk) for e in events] == [('SAVE', 'raw_master', obj.pk)]


def test_saves_count_properties():
    obj = m.BasicMaster(name='a')
    assert obj.cqrs_saves_count == 0
    assert obj.is_initial_cqrs_save is True
    with transaction.atomic():
        obj.save()
        assert obj.cqrs_saves_count == 1
        assert obj.is_initial_cqrs_save is True
        obj.save()
        assert obj.cqrs_saves_count == 2
        assert obj.is_initial_cqrs_save is False
    assert obj.cqrs_saves_count == 0  # reset when the event is produced
    obj.reset_cqrs_saves_count()
    assert obj.cqrs_saves_count == 0


# -- the upstream test seam ----------------------------------------------------------------------
def test_patching_controller_producer_produce_captures_events():
    with mock.patch('dj_cqrs.controller.producer.produce') as produce:
        obj = m.BasicMaster.objects.create(name='patched')
        obj.name = 'patched2'
        obj.save()
        obj_pk = obj.pk
        obj.delete()

    assert produce.call_count == 3
    payloads = [c.args[0] for c in produce.call_args_list]
    assert all(isinstance(p, TransportPayload) for p in payloads)
    assert [p.signal_type for p in payloads] == [SignalType.SAVE, SignalType.SAVE, SignalType.DELETE]
    assert [p.instance_data['cqrs_revision'] for p in payloads] == [0, 1, 2]
    assert payloads[1].instance_data['name'] == 'patched2'
    # The patched function swallowed the events: the loopback replica never saw them.
    assert not m.BasicReplica.objects.filter(pk=obj_pk).exists()


def test_capture_events_does_not_deliver_by_default_and_publish_true_delivers():
    with capture_events() as events:
        obj = m.BasicMaster.objects.create(name='captured')
    assert len(events) == 1
    assert not m.BasicReplica.objects.filter(pk=obj.pk).exists()
    assert events.of('basic') == list(events)
    assert events.of('author') == []

    with capture_events(publish=True) as events:
        obj2 = m.BasicMaster.objects.create(name='delivered')
    assert len(events) == 1
    assert m.BasicReplica.objects.get(pk=obj2.pk).name == 'delivered'


def test_loopback_transport_applies_at_commit():
    obj = m.BasicMaster.objects.create(name='a', counter=1)
    replica = m.BasicReplica.objects.get(pk=obj.pk)
    assert (replica.name, replica.counter, replica.cqrs_revision) == ('a', 1, 0)
    assert replica.cqrs_updated == m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated


def test_partial_saves_with_flag_in_one_transaction_publish_one_consistent_event():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events(publish=True) as events, transaction.atomic():
        obj.name = 'b'
        obj.save(update_fields=['name'], update_cqrs_fields=True)
        obj.name = 'c'
        obj.save(update_fields=['name'], update_cqrs_fields=True)
    stored = db_revision(m.BasicMaster, obj.pk)
    assert stored >= 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('c', stored)]
    assert obj.cqrs_revision == stored
    replica = m.BasicReplica.objects.get(pk=obj.pk)
    assert (replica.name, replica.cqrs_revision) == ('c', stored)


def test_raw_save_base_still_emits_like_upstream_loaddata():
    from django.utils import timezone

    obj = m.BasicMaster(name='fixture', cqrs_revision=5, cqrs_updated=timezone.now())
    with capture_events() as events:
        obj.save_base(raw=True)
    assert [(e.signal_type, e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [
        ('SAVE', 'fixture', 5)
    ]


def test_failed_autocommit_save_emits_nothing_and_next_save_works():
    from django.db import DataError

    obj = m.BasicMaster.objects.create(name='ok')
    with capture_events() as events:
        obj.name = 'x' * 150  # varchar(100)
        with pytest.raises(DataError):
            obj.save()
        assert events == []
        obj.name = 'fine'
        obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('fine', 1)]
