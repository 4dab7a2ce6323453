"""Mapping of master data onto replica fields (UPSTREAM_SPEC §6.2, §6.3)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from tests.replica._helpers import T0, apply, basic, db, messages, ts
from tests.testapp import models as m

pytestmark = db


@pytest.fixture
def recorded(monkeypatch):
    """Record what BasicReplica's create / update hooks receive."""
    calls = []
    create, update = m.BasicReplica.cqrs_create.__func__, m.BasicReplica.cqrs_update

    def cqrs_create(cls, sync, mapped_data, previous_data=None, **kwargs):
        calls.append(('create', sync, dict(mapped_data), previous_data, kwargs))
        return create(cls, sync, mapped_data, previous_data=previous_data, **kwargs)

    def cqrs_update(self, sync, mapped_data, previous_data=None, **kwargs):
        calls.append(('update', sync, dict(mapped_data), previous_data, kwargs))
        return update(self, sync, mapped_data, previous_data=previous_data, **kwargs)

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    monkeypatch.setattr(m.BasicReplica, 'cqrs_update', cqrs_update)
    return calls


# -- save data -----------------------------------------------------------------------------------
@pytest.mark.parametrize('missing', ['cqrs_revision', 'cqrs_updated'])
def test_sync_fields_are_required(caplog, missing):
    data = basic()
    del data[missing]
    assert not apply('SAVE', 'basic', data)
    assert messages(caplog, 'ERROR') == ['CQRS sync fields are not provided in data (basic).']
    assert not m.BasicReplica.objects.exists()


def test_sync_fields_are_required_on_mapped_model_too(caplog):
    assert not apply('SAVE', 'tracked', {'id': 1, 'char_field': 'x', 'publisher': None, 'cqrs_revision': 0})
    assert messages(caplog, 'ERROR') == ['CQRS sync fields are not provided in data (tracked).']


def test_pk_is_required(caplog):
    data = basic()
    del data['id']
    assert not apply('SAVE', 'basic', data, instance_pk=1)
    assert messages(caplog, 'ERROR') == ['CQRS PK is not provided in data (basic).']


def test_all_non_null_fields_are_required(caplog):
    data = basic()
    del data['counter']
    assert not apply('SAVE', 'basic', data)
    assert messages(caplog, 'ERROR') == ['Not all required CQRS fields are provided in data (basic).']
    assert not m.BasicReplica.objects.exists()


def test_nullable_fields_may_be_absent():
    pk = uuid.uuid4()
    data = {
        'id': str(pk),
        'char': 'c',
        'integer': 1,
        'amount': '1.5',
        'flag': False,
        'cqrs_revision': 0,
        'cqrs_updated': ts(),
    }
    assert apply('SAVE', 'typed', data, instance_pk=str(pk))
    row = m.TypedReplica.objects.get(pk=pk)
    assert (row.when, row.day, row.maybe, row.publisher) == (None, None, None, None)


def test_unknown_fields_are_dropped(recorded):
    assert apply('SAVE', 'basic', basic(unknown='x', books=[1, 2]))
    (call,) = recorded
    assert set(call[2]) == {'id', 'name', 'counter', 'cqrs_revision', 'cqrs_updated'}
    assert m.BasicReplica.objects.get(pk=1).name == 'r0'


def test_values_are_converted_by_django_when_saving():
    pk = uuid.uuid4()
    data = {
        'id': str(pk),
        'char': 'c',
        'integer': 7,
        'amount': Decimal('12345678901234567890.1234567891'),
        'when': '2024-05-01 10:00:00.123456+00:00',
        'day': '2024-05-01',
        'flag': True,
        'maybe': None,
        'publisher': 3,
        'cqrs_revision': 0,
        'cqrs_updated': ts(),
    }
    assert apply('SAVE', 'typed', data, instance_pk=str(pk))
    row = m.TypedReplica.objects.get(pk=pk)
    assert row.amount == Decimal('12345678901234567890.1234567891')
    assert row.when == T0.replace(microsecond=123456)
    assert row.day == dt.date(2024, 5, 1)
    assert row.publisher == 3
    assert row.cqrs_updated == T0


# -- CQRS_MAPPING ----------------------------------------------------------------------------------
def _tracked(pk=1, rev=0, minutes=0, **extra):
    data = {
        'id': pk,
        'char_field': f'c{rev}',
        'publisher': 5,
        'cqrs_revision': rev,
        'cqrs_updated': ts(minutes),
    }
    data.update(extra)
    return data


def test_mapping_renames_and_drops_unmapped_keys():
    assert apply('SAVE', 'tracked', _tracked(unmapped='dropped', text='not a master key'))
    row = m.TrackedReplica.objects.get(pk=1)
    assert (row.text, row.publisher_id_value, row.cqrs_revision) == ('c0', 5, 0)


def test_mapping_missing_master_key_fails(caplog):
    data = _tracked()
    del data['publisher']
    assert not apply('SAVE', 'tracked', data)
    assert messages(caplog, 'ERROR') == ['Bad master-replica mapping for publisher (tracked).']
    assert not m.TrackedReplica.objects.exists()


def test_mapped_previous_data_keeps_only_mapped_keys_renamed():
    apply('SAVE', 'tracked', _tracked())
    previous = {'char_field': 'old', 'publisher': 4, 'cqrs_revision': 0, 'unknown': 1, 'id': 1}
    assert apply('SAVE', 'tracked', _tracked(rev=1, minutes=1), previous_data=previous)
    log = m.HookLog.objects.filter(action='update').get()
    assert log.previous_data == {'text': 'old', 'publisher_id_value': 4, 'id': 1}


def test_empty_previous_data_becomes_none():
    assert apply('SAVE', 'tracked', _tracked(), previous_data={})
    assert m.HookLog.objects.get(action='create').previous_data is None


def test_mapped_previous_data_with_no_mapped_key_becomes_none():
    assert apply('SAVE', 'tracked', _tracked(), previous_data={'cqrs_revision': None})
    assert m.HookLog.objects.get(action='create').previous_data is None


def test_unmapped_model_gets_previous_data_unfiltered(recorded):
    previous = {'name': 'old', 'no_such_field': 1, 'publisher_id': None}
    assert apply('SAVE', 'basic', basic(), previous_data=previous)
    assert recorded[0][3] == previous


def test_custom_serialization_passes_data_through_untouched():
    data = {
        'id': 9,
        'name': 'A',
        'publisher': {'id': 1, 'name': 'P'},
        'books': ['b1'],
        'extra': {'nested': [1, 2]},
        'cqrs_revision': 0,
        'cqrs_updated': ts(),
    }
    assert apply('SAVE', 'author', data)
    row = m.AuthorReplica.objects.get(pk=9)
    assert (row.name, row.publisher_name, row.books) == ('A', 'P', ['b1'])


def test_custom_serialization_still_requires_sync_fields_and_pk(caplog):
    assert not apply('SAVE', 'author', {'name': 'A', 'cqrs_revision': 0, 'cqrs_updated': ts()}, instance_pk=1)
    assert not apply('SAVE', 'author', {'id': 1, 'name': 'A', 'cqrs_revision': 0})
    assert messages(caplog, 'ERROR') == [
        'CQRS PK is not provided in data (author).',
        'CQRS sync fields are not provided in data (author).',
    ]


def test_manager_save_instance_returns_instance():
    instance = m.BasicReplica.cqrs.save_instance(basic(pk=3))
    assert isinstance(instance, m.BasicReplica)
    assert instance.pk == 3
    assert m.BasicReplica.cqrs.save_instance({'id': 4}) is None


# -- delete data -----------------------------------------------------------------------------------
def test_delete_uses_id_key_and_ignores_mapping():
    apply('SAVE', 'tracked', _tracked(pk=2))
    delete = {'id': 2, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}
    assert apply('DELETE', 'tracked', delete) is True
    assert not m.TrackedReplica.objects.filter(pk=2).exists()
    assert m.HookLog.objects.get(action='delete').data == delete


def test_delete_requires_id(caplog):
    m.BasicReplica.objects.create(**basic())
    assert (
        apply('DELETE', 'basic', {'pk': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}, instance_pk=1) is False
    )
    assert messages(caplog, 'ERROR') == ['CQRS PK is not provided in data (basic).']
    assert m.BasicReplica.objects.filter(pk=1).exists()


@pytest.mark.parametrize('missing', ['cqrs_revision', 'cqrs_updated'])
def test_delete_requires_sync_fields(caplog, missing):
    m.BasicReplica.objects.create(**basic())
    data = {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}
    del data[missing]
    assert apply('DELETE', 'basic', data) is False
    assert messages(caplog, 'ERROR') == ['CQRS sync fields are not provided in data (basic).']
    assert m.BasicReplica.objects.filter(pk=1).exists()


def test_delete_of_absent_row_is_success():
    assert apply('DELETE', 'basic', {'id': 404, 'cqrs_revision': 1, 'cqrs_updated': ts()}) is True
    assert m.BasicReplica.cqrs.delete_instance({'id': 405, 'cqrs_revision': 1, 'cqrs_updated': ts()}) is True


def test_delete_extra_keys_like_custom_are_ignored_by_default_manager():
    m.BasicReplica.objects.create(**basic())
    data = {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1), 'custom': {'a': 1}}
    assert apply('DELETE', 'basic', data) is True
    assert not m.BasicReplica.objects.exists()
