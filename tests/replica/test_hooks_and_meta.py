"""Replica hooks, ``CQRS_META``, ``CQRS_ONLY_DIRECT_SYNCS`` and routing (UPSTREAM_SPEC §2.6, §2.7, §6.1)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from dj_cqrs.controller.consumer import route_signal_to_replica_model
from tests.replica._helpers import apply, basic, db, db_tx, messages, ts
from tests.testapp import models as m

pytestmark = db


def _tracked(pk=1, rev=0, **extra):
    data = {
        'id': pk,
        'char_field': f'c{rev}',
        'publisher': None,
        'cqrs_revision': rev,
        'cqrs_updated': ts(rev),
    }
    data.update(extra)
    return data


# -- hooks -------------------------------------------------------------------------------------------
def test_hooks_receive_sync_previous_data_and_meta():
    meta = {'user': 7, 'access': {'owner': True}}
    apply('SAVE', 'tracked', _tracked(rev=0), previous_data={'char_field': None}, meta=meta)
    apply('SAVE', 'tracked', _tracked(rev=1), previous_data={'char_field': 'c0'}, meta=meta)
    apply('SYNC', 'tracked', _tracked(rev=1), meta={'sync': 1})
    apply('DELETE', 'tracked', {'id': 1, 'cqrs_revision': 2, 'cqrs_updated': ts(2)}, meta={'who': 'me'})
    logs = list(m.HookLog.objects.order_by('pk').values_list('action', 'sync', 'previous_data', 'meta'))
    assert logs == [
        ('create', False, {'text': None}, meta),
        ('update', False, {'text': 'c0'}, meta),
        ('update', True, None, {'sync': 1}),
        ('delete', None, None, {'who': 'me'}),
    ]


def test_sync_create_passes_sync_true():
    apply('SYNC', 'tracked', _tracked(rev=4))
    assert list(m.HookLog.objects.values_list('action', 'sync')) == [('create', True)]


def test_meta_not_passed_without_cqrs_meta(monkeypatch):
    seen = []

    def cqrs_create(cls, sync, mapped_data, previous_data=None, **kwargs):
        seen.append(('create', kwargs))
        return cls._default_manager.create(**mapped_data)

    def cqrs_update(self, sync, mapped_data, previous_data=None, **kwargs):
        seen.append(('update', kwargs))
        return self

    def cqrs_delete(cls, master_data, **kwargs):
        seen.append(('delete', kwargs))
        return True

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    monkeypatch.setattr(m.BasicReplica, 'cqrs_update', cqrs_update)
    monkeypatch.setattr(m.BasicReplica, 'cqrs_delete', classmethod(cqrs_delete))
    apply('SAVE', 'basic', basic(rev=0), meta={'x': 1})
    apply('SAVE', 'basic', basic(rev=1), meta={'x': 1})
    apply('DELETE', 'basic', {'id': 1, 'cqrs_revision': 2, 'cqrs_updated': ts(2)}, meta={'x': 1})
    assert seen == [('create', {}), ('update', {}), ('delete', {})]


def test_meta_passed_to_cqrs_save_of_non_model_replica_only_with_flag(monkeypatch):
    seen = []

    def cqrs_save(cls, master_data, **kwargs):
        seen.append(kwargs)
        return True

    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(cqrs_save))
    apply('SAVE', 'raw_master', {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': ts()}, meta={'m': 1})
    monkeypatch.setattr(m.CacheReplica, 'CQRS_META', True)
    apply('SAVE', 'raw_master', {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts()}, meta={'m': 1})
    apply('SYNC', 'raw_master', {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts()}, meta={'m': 2})
    assert seen == [
        {'previous_data': None},
        {'previous_data': None, 'meta': {'m': 1}},
        {'previous_data': None, 'meta': {'m': 2}, 'sync': True},
    ]


def test_save_passes_no_sync_kwarg_to_cqrs_save(monkeypatch):
    seen = []

    def cqrs_save(cls, master_data, **kwargs):
        seen.append(sorted(kwargs))
        return True

    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(cqrs_save))
    apply('SAVE', 'raw_master', {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': ts()})
    apply('SYNC', 'raw_master', {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': ts()})
    assert seen == [['previous_data'], ['previous_data', 'sync']]


# -- only direct syncs -----------------------------------------------------------------------------
def _filtered(rev=0, name='n', minutes=0):
    return {'id': 1, 'name': name, 'cqrs_revision': rev, 'cqrs_updated': ts(minutes)}


def test_only_direct_syncs_ignores_broadcast_sync():
    apply('SAVE', 'filtered', _filtered(name='saved'))
    assert apply('SYNC', 'filtered', _filtered(name='broadcast', minutes=1)) is True
    assert m.FilteredReplica.objects.get(pk=1).name == 'saved'


def test_only_direct_syncs_ignores_sync_to_another_queue():
    apply('SAVE', 'filtered', _filtered(name='saved'))
    assert apply('SYNC', 'filtered', _filtered(name='other', minutes=1), queue='someone_else') is True
    assert m.FilteredReplica.objects.get(pk=1).name == 'saved'


def test_only_direct_syncs_applies_direct_sync_to_our_queue():
    apply('SAVE', 'filtered', _filtered(name='saved'))
    assert apply('SYNC', 'filtered', _filtered(name='direct', minutes=1), queue='replica')
    assert m.FilteredReplica.objects.get(pk=1).name == 'direct'


def test_only_direct_syncs_still_applies_saves_and_deletes():
    assert apply('SAVE', 'filtered', _filtered(name='saved'))
    assert apply('SAVE', 'filtered', _filtered(rev=1, name='saved2', minutes=1))
    assert m.FilteredReplica.objects.get(pk=1).name == 'saved2'
    assert apply('DELETE', 'filtered', {'id': 1, 'cqrs_revision': 2, 'cqrs_updated': ts(2)}) is True
    assert not m.FilteredReplica.objects.exists()


@db_tx  # route_signal_to_replica_model() calls close_old_connections(), as upstream does
def test_only_direct_syncs_compares_with_configured_queue():
    apply('SAVE', 'filtered', _filtered(name='saved'))
    with override_settings(CQRS={'transport': 'dj_cqrs.testing.LoopbackTransport', 'queue': 'q2'}):
        assert route_signal_to_replica_model(
            'SYNC', 'filtered', _filtered(name='x', minutes=1), queue='replica'
        )
        assert m.FilteredReplica.objects.get(pk=1).name == 'saved'
        assert route_signal_to_replica_model('SYNC', 'filtered', _filtered(name='y', minutes=1), queue='q2')
    assert m.FilteredReplica.objects.get(pk=1).name == 'y'


# -- routing ---------------------------------------------------------------------------------------
def test_bad_signal_type_is_a_failure(caplog):
    assert route_signal_to_replica_model('UPDATE', 'basic', basic()) is None
    assert messages(caplog, 'ERROR') == ['Bad signal type "UPDATE" for CQRS_ID "basic".']
    assert not m.BasicReplica.objects.exists()


def test_unknown_cqrs_id_is_a_failure(caplog):
    assert route_signal_to_replica_model('SAVE', 'nope', basic()) is None
    assert messages(caplog, 'ERROR') == ['No model with such CQRS_ID: nope.']


@db_tx  # route_signal_to_replica_model() calls close_old_connections(), as upstream does
def test_route_signal_applies_directly():
    assert route_signal_to_replica_model('SAVE', 'basic', basic(rev=0))
    assert route_signal_to_replica_model('SYNC', 'basic', basic(rev=0, name='s'))
    assert m.BasicReplica.objects.get(pk=1).name == 's'
    assert route_signal_to_replica_model(
        'DELETE', 'basic', {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}
    )
    assert not m.BasicReplica.objects.exists()


def test_consume_deep_copies_the_payload(monkeypatch):
    from dj_cqrs.controller import consumer
    from dj_cqrs.dataclasses import TransportPayload

    def cqrs_save(cls, master_data, **kwargs):
        master_data['id'] = 'mutated'
        master_data.clear()
        return True

    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(cqrs_save))
    data = {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': ts()}
    payload = TransportPayload('SAVE', 'raw_master', data, 1)
    assert consumer.consume(payload) is True
    assert payload.instance_data == {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': ts()}


# -- retry hooks -----------------------------------------------------------------------------------
def test_retry_hooks_default_to_settings():
    # tests.settings: CQRS_MAX_RETRIES=2, CQRS_RETRY_DELAY=0
    assert [m.BasicReplica.should_retry_cqrs(n) for n in range(4)] == [True, True, False, False]
    assert m.BasicReplica.get_cqrs_retry_delay(0) == 0
    assert m.CacheReplica.should_retry_cqrs(1, ValueError('x')) is True


@pytest.mark.parametrize(
    ('max_retries', 'expected'), [(None, [True, True, True]), (0, [False, False, False])]
)
def test_retry_hook_none_and_zero(max_retries, expected):
    value = {
        'transport': 'dj_cqrs.testing.LoopbackTransport',
        'queue': 'replica',
        'replica': {'CQRS_MAX_RETRIES': max_retries, 'CQRS_RETRY_DELAY': 5},
    }
    with override_settings(CQRS=value):
        assert [m.BasicReplica.should_retry_cqrs(n) for n in (0, 1, 100)] == expected
        assert m.BasicReplica.get_cqrs_retry_delay(3) == 5
