"""Non-model replicas, handler results and DB errors (UPSTREAM_SPEC §2.6, §6.1 step 6, §6.6)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, DataError, OperationalError, connection

from dj_cqrs.metas import ReplicaMeta
from dj_cqrs.mixins import RawReplicaMixin
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.replica import tombstones
from dj_cqrs.replica.managers import last_error
from tests.replica._helpers import apply, basic, db, db_tx, messages, ts
from tests.testapp import models as m

pytestmark = db


def _raw(pk=1, rev=0, **extra):
    return {'id': pk, 'name': 'n', 'cqrs_revision': rev, 'cqrs_updated': ts(rev), **extra}


# -- CacheReplica (RawReplicaMixin + ReplicaMeta.register) ---------------------------------------
def test_raw_replica_is_registered():
    assert ReplicaRegistry.get_model_by_cqrs_id('raw_master') is m.CacheReplica
    assert ReplicaRegistry.get_model_by_cqrs_id('no_produce') is m.TablelessReplica
    assert m.CacheReplica.CQRS_NO_DB_OPERATIONS is True


def test_cache_replica_save_and_delete():
    assert apply('SAVE', 'raw_master', _raw(pk=5)) is True
    assert m.CacheReplica.store == {5: _raw(pk=5)}
    assert apply('DELETE', 'raw_master', {'id': 5, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}) is True
    assert m.CacheReplica.store == {}


@db_tx
def test_cache_replica_end_to_end_from_raw_master():
    obj = m.RawMaster.objects.create(name='cached')
    stored = m.CacheReplica.store[obj.pk]
    assert (stored['name'], stored['cqrs_revision']) == ('cached', 0)
    obj.name = 'cached2'
    obj.save()
    assert m.CacheReplica.store[obj.pk]['cqrs_revision'] == 1
    pk = obj.pk
    obj.delete()
    assert pk not in m.CacheReplica.store


@db_tx
def test_no_db_operations_replica_runs_without_transaction(monkeypatch):
    seen = []

    def cqrs_save(cls, master_data, **kwargs):
        seen.append(connection.in_atomic_block)
        return True

    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(cqrs_save))
    assert apply('SAVE', 'raw_master', _raw())
    assert seen == [False]


@db_tx
def test_db_replica_runs_in_a_transaction(monkeypatch):
    seen = []
    original = m.BasicReplica.cqrs_create.__func__

    def cqrs_create(cls, sync, mapped_data, **kwargs):
        seen.append(connection.in_atomic_block)
        return original(cls, sync, mapped_data, **kwargs)

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    assert apply('SAVE', 'basic', basic())
    assert seen == [True]


def test_tableless_replica_receives_events():
    assert apply('SAVE', 'no_produce', _raw(pk=1))
    assert apply('SYNC', 'no_produce', _raw(pk=1, rev=1))
    assert apply('DELETE', 'no_produce', {'id': 1, 'cqrs_revision': 2, 'cqrs_updated': ts(2)}) is True
    assert m.TablelessReplica.received == [_raw(pk=1), _raw(pk=1, rev=1)]


def test_base_handlers_raise_not_implemented():
    with pytest.raises(NotImplementedError):
        RawReplicaMixin.cqrs_save({})
    with pytest.raises(NotImplementedError):
        RawReplicaMixin.cqrs_delete({})
    # ReplicaMixin with CQRS_NO_DB_OPERATIONS falls through to the raw mixin.
    with pytest.raises(NotImplementedError):
        super(m.TablelessReplica, m.TablelessReplica).cqrs_save(_raw())
    with pytest.raises(NotImplementedError):
        super(m.TablelessReplica, m.TablelessReplica).cqrs_delete(_raw())


def test_replica_meta_register_returns_the_class():
    class Temp(RawReplicaMixin):
        CQRS_ID = 'raw_master'  # already taken: kept aside as a duplicate, not registered

    try:
        assert ReplicaMeta.register(Temp) is Temp
        assert ReplicaRegistry.get_model_by_cqrs_id('raw_master') is m.CacheReplica
        assert ReplicaRegistry.is_duplicate(Temp)
    finally:
        ReplicaRegistry.duplicates[:] = [d for d in ReplicaRegistry.duplicates if d[1] is not Temp]


# -- handler results -------------------------------------------------------------------------------
@pytest.mark.parametrize('falsy', [None, False, 0, {}, '', []])
def test_falsy_handler_result_is_a_failure(monkeypatch, falsy):
    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(lambda cls, data, **kw: falsy))
    monkeypatch.setattr(m.CacheReplica, 'cqrs_delete', classmethod(lambda cls, data, **kw: falsy))
    assert apply('SAVE', 'raw_master', _raw()) == falsy
    assert not apply('DELETE', 'raw_master', _raw())
    assert last_error.get() is None  # a failure without an exception


@pytest.mark.parametrize('truthy', [True, 1, 'ok', {'a': 1}])
def test_truthy_handler_result_is_success(monkeypatch, truthy):
    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(lambda cls, data, **kw: truthy))
    assert apply('SAVE', 'raw_master', _raw()) == truthy


def test_non_db_exception_propagates(monkeypatch):
    def boom(cls, data, **kwargs):
        raise ValueError('not a db error')

    monkeypatch.setattr(m.CacheReplica, 'cqrs_save', classmethod(boom))
    with pytest.raises(ValueError, match='not a db error'):
        apply('SAVE', 'raw_master', _raw())


# -- DB errors -----------------------------------------------------------------------------------------
def test_db_error_on_create_is_a_failure_recorded_in_last_error(caplog):
    data = basic(name='x' * 150)  # varchar(100)
    assert apply('SAVE', 'basic', data) is None
    error = last_error.get()
    assert isinstance(error, DataError)
    (msg,) = messages(caplog, 'ERROR')
    assert msg.startswith('value too long for type character varying(100)')
    assert msg.endswith('\nCQRS create error: pk = 1 (basic).')
    assert not m.BasicReplica.objects.exists()


@db_tx
def test_db_error_on_update_is_a_failure_recorded_in_last_error(caplog):
    assert apply('SAVE', 'basic', basic(rev=0))
    caplog.clear()
    assert apply('SAVE', 'basic', basic(rev=1, name='y' * 150)) is None
    assert isinstance(last_error.get(), DataError)
    (msg,) = messages(caplog, 'ERROR')
    assert msg.endswith('\nCQRS update error: pk = 1, cqrs_revision = 1 (basic).')
    row = m.BasicReplica.objects.get(pk=1)
    assert (row.name, row.cqrs_revision) == ('r0', 0)
    # The failed message left the connection usable: the next one applies.
    assert apply('SAVE', 'basic', basic(rev=1))
    assert m.BasicReplica.objects.get(pk=1).cqrs_revision == 1


def test_validation_error_on_create_is_a_failure(monkeypatch, caplog):
    def cqrs_create(cls, sync, mapped_data, **kwargs):
        raise ValidationError('bad value')

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    assert apply('SAVE', 'basic', basic()) is None
    assert isinstance(last_error.get(), ValidationError)
    assert messages(caplog, 'ERROR') == ["['bad value']\nCQRS create error: pk = 1 (basic)."]


@db_tx
def test_db_error_escaping_handler_is_caught_by_dispatch(monkeypatch, caplog):
    def cqrs_delete(cls, master_data, **kwargs):
        raise OperationalError('server closed the connection')

    monkeypatch.setattr(m.BasicReplica, 'cqrs_delete', classmethod(cqrs_delete))
    assert apply('DELETE', 'basic', {'id': 1, 'cqrs_revision': 2, 'cqrs_updated': ts(2)}) is None
    assert isinstance(last_error.get(), OperationalError)
    assert messages(caplog, 'ERROR') == [
        'server closed the connection\nCQRS DELETE error: pk = 1, cqrs_revision = 2 (basic).'
    ]


@db_tx
def test_dispatch_error_log_prints_none_for_missing_values(monkeypatch, caplog):
    def cqrs_save(cls, master_data, **kwargs):
        raise OperationalError('boom')

    monkeypatch.setattr(m.BasicReplica, 'cqrs_save', classmethod(cqrs_save))
    assert apply('SAVE', 'basic', {'name': 'x'}, instance_pk=1) is None
    assert messages(caplog, 'ERROR') == ['boom\nCQRS SAVE error: pk = None, cqrs_revision = None (basic).']


@db_tx
def test_db_error_in_delete_is_a_failure(monkeypatch, caplog):
    m.BasicReplica.objects.create(**basic())

    def record(*args, **kwargs):
        raise DatabaseError('disk full')

    monkeypatch.setattr(tombstones, 'record', record)
    assert apply('DELETE', 'basic', {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}) is False
    assert isinstance(last_error.get(), DatabaseError)
    assert messages(caplog, 'ERROR') == ['disk full\nCQRS delete error: pk = 1 (basic).']
    assert m.BasicReplica.objects.filter(pk=1).exists()  # the delete was rolled back with it


# -- query timeouts (§6.7) -------------------------------------------------------------------------
@pytest.fixture
def query_timeout(settings):
    value = dict(settings.CQRS)
    value['replica'] = {
        **value.get('replica', {}),
        'CQRS_QUERY_TIMEOUT': 50,
        'CQRS_LOG_TIMED_OUT_QUERIES': True,
        'CQRS_QUERY_LOGGER': 'cqrs-timeouts',
    }
    settings.CQRS = value
    yield
    with connection.cursor() as cursor:
        cursor.execute('SET statement_timeout TO 0')


@db_tx
def test_query_timeout_is_applied_and_timed_out_query_logged(query_timeout, monkeypatch, caplog):
    caplog.set_level('ERROR', logger='cqrs-timeouts')
    seen = []

    def cqrs_delete(cls, master_data, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute('SHOW statement_timeout')
            seen.append(cursor.fetchone()[0])
            cursor.execute('SELECT pg_sleep(1)')
        return True

    monkeypatch.setattr(m.BasicReplica, 'cqrs_delete', classmethod(cqrs_delete))
    assert apply('DELETE', 'basic', {'id': 1, 'cqrs_revision': 1, 'cqrs_updated': ts(1)}) is None
    assert seen == ['50ms']
    error = last_error.get()
    assert isinstance(error, OperationalError)
    assert 'statement timeout' in str(error)
    errors = messages(caplog, 'ERROR')
    assert len(errors) == 1
    assert errors[0].endswith('\nCQRS DELETE error: pk = 1, cqrs_revision = 1 (basic).')
    timed_out = [r.getMessage() for r in caplog.records if r.name == 'cqrs-timeouts']
    assert timed_out == ['Timed out query:\nSELECT pg_sleep(1)']


@db_tx
def test_raw_db_error_in_create_hook_is_the_recorded_error(monkeypatch, caplog):
    def cqrs_create(cls, sync, mapped_data, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute('SELECT 1/0')
        return True

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    assert apply('SAVE', 'basic', basic()) is None
    assert isinstance(last_error.get(), DataError)  # division_by_zero
    errors = messages(caplog, 'ERROR')
    assert len(errors) == 1
    assert errors[0].endswith('\nCQRS create error: pk = 1 (basic).')


@db_tx
def test_no_query_timeout_by_default(monkeypatch):
    seen = []
    original = m.BasicReplica.cqrs_create.__func__

    def cqrs_create(cls, sync, mapped_data, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute('SHOW statement_timeout')
            seen.append(cursor.fetchone()[0])
        return original(cls, sync, mapped_data, **kwargs)

    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))
    assert apply('SAVE', 'basic', basic())
    assert seen == ['0']
