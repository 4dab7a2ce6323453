"""Tracked fields and ``previous_data`` (UPSTREAM_SPEC §4.7)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Concat

from dj_cqrs.constants import FIELDS_TRACKER_FIELD_NAME, TRACKED_FIELDS_ATTR_NAME
from dj_cqrs.testing import capture_events
from tests.master._helpers import db_tx
from tests.testapp import models as m

pytestmark = db_tx


def test_tracker_is_installed_only_on_tracked_models():
    assert getattr(m.TrackedMaster, FIELDS_TRACKER_FIELD_NAME, None) is not None
    assert getattr(m.BasicMaster, FIELDS_TRACKER_FIELD_NAME, None) is None


def test_untracked_model_sends_null_previous_data():
    with capture_events() as events:
        obj = m.BasicMaster.objects.create(name='a')
        obj.save()
    assert [e.previous_data for e in events] == [None, None]
    assert events[0].to_dict()['previous_data'] is None


def test_create_previous_data_uses_attnames_and_none_values():
    publisher = m.Publisher.objects.create(name='p')
    with capture_events() as events:
        m.TrackedMaster.objects.create(char_field='a', publisher=publisher)
    (event,) = events.of('tracked')
    # Every tracked value that is set, as None; FKs by attname; the unsaved auto pk and
    # cqrs_updated (still None before the insert) are left out; cqrs_revision (0) is in.
    assert event.previous_data == {'char_field': None, 'publisher_id': None, 'cqrs_revision': None}


def test_create_previous_data_skips_none_fields():
    with capture_events() as events:
        m.TrackedMaster.objects.create(char_field='a')
    assert events.of('tracked')[0].previous_data == {'char_field': None, 'cqrs_revision': None}


def test_update_previous_data_uses_field_names_and_old_values():
    p1 = m.Publisher.objects.create(name='p1')
    p2 = m.Publisher.objects.create(name='p2')
    obj = m.TrackedMaster.objects.create(char_field='old', publisher=p1)
    obj = m.TrackedMaster.objects.get(pk=obj.pk)
    with capture_events() as events:
        obj.char_field = 'new'
        obj.publisher = p2
        obj.save()
    (event,) = events.of('tracked')
    assert event.previous_data == {'char_field': 'old', 'publisher': p1.pk, 'cqrs_revision': 0}
    assert event.instance_data['char_field'] == 'new'
    assert event.instance_data['publisher'] == p2.pk
    assert event.instance_data['cqrs_revision'] == 1


def test_update_of_unchanged_fields_reports_only_revision():
    obj = m.TrackedMaster.objects.create(char_field='same')
    with capture_events() as events:
        obj.save()
    assert events[0].previous_data == {'cqrs_revision': 0}


def test_previous_data_is_relative_to_the_last_save():
    obj = m.TrackedMaster.objects.create(char_field='v0')
    obj.char_field = 'v1'
    obj.save()
    with capture_events() as events:
        obj.char_field = 'v2'
        obj.save()
    assert events[0].previous_data == {'char_field': 'v1', 'cqrs_revision': 1}


def test_previous_data_of_two_saves_in_one_transaction_is_from_the_first():
    obj = m.TrackedMaster.objects.create(char_field='v0')
    with capture_events() as events, transaction.atomic():
        obj.char_field = 'v1'
        obj.save()
        obj.char_field = 'v2'
        obj.save()
    (event,) = events
    assert event.instance_data['char_field'] == 'v2'
    assert event.previous_data == {'char_field': 'v0', 'cqrs_revision': 0}


def test_f_expression_previous_value_is_the_value_before_the_update():
    obj = m.TrackedMaster.objects.create(char_field='ab')
    with capture_events() as events:
        obj.char_field = Concat('char_field', Value('c'))
        obj.save()
    (event,) = events
    assert event.previous_data == {'char_field': 'ab', 'cqrs_revision': 0}
    assert event.instance_data['char_field'] == 'abc'
    assert obj.char_field == 'abc'


def test_get_tracked_fields_data_and_attribute_name():
    obj = m.TrackedMaster.objects.create(char_field='a')
    assert obj.get_tracked_fields_data() == getattr(obj, TRACKED_FIELDS_ATTR_NAME)
    assert m.BasicMaster(name='x').get_tracked_fields_data() is None


def test_previous_data_is_mapped_and_reaches_replica_hooks():
    publisher = m.Publisher.objects.create(name='p')
    obj = m.TrackedMaster.objects.create(char_field='old', publisher=publisher)
    obj.char_field = 'new'
    obj.save()
    logs = list(m.HookLog.objects.filter(cqrs_id='tracked').order_by('pk').values('action', 'previous_data'))
    # create: previous data keys are attnames (not in CQRS_MAPPING except char_field) -> mapped
    assert logs == [
        {'action': 'create', 'previous_data': {'text': None}},
        {'action': 'update', 'previous_data': {'text': 'old'}},
    ]
    replica = m.TrackedReplica.objects.get(pk=obj.pk)
    assert (replica.text, replica.publisher_id_value, replica.cqrs_revision) == ('new', publisher.pk, 1)


def test_sync_reuses_tracked_data_of_the_last_save():
    obj = m.TrackedMaster.objects.create(char_field='a')
    obj.char_field = 'b'
    obj.save()
    with capture_events() as events:
        obj.cqrs_sync()
    assert events[0].signal_type == 'SYNC'
    assert events[0].previous_data == {'char_field': 'a', 'cqrs_revision': 0}
