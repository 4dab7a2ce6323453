"""The bulk lane's lean write path: few round trips per batch, ``unnest`` upserts on PostgreSQL,
a failed bulk write re-running the batch through the hook lane, and the ORM path elsewhere."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections, router
from django.test.utils import CaptureQueriesContext

from dj_cqrs.payload import TransportPayload
from dj_cqrs.replica import apply as apply_module
from dj_cqrs.replica.apply import Item, _array_param, _SqlPlan, apply_batch
from dj_cqrs.replica.tombstones import ReplicaTombstone
from tests.support import services
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc)


def ts(seconds: float) -> str:
    return str(T0 + dt.timedelta(seconds=seconds))


def save(pk: int, rev: int, name: str | None = None, signal: str = 'SAVE', **extra: Any) -> Item:
    data = {
        'id': pk,
        'name': name or f'r{rev}',
        'counter': rev,
        'cqrs_revision': rev,
        'cqrs_updated': ts(rev),
    }
    data.update(extra)
    return Item(TransportPayload(signal, 'basic', data, pk), m.BasicReplica)


def delete(pk: int, rev: int) -> Item:
    data = {'id': pk, 'cqrs_revision': rev, 'cqrs_updated': ts(rev)}
    return Item(TransportPayload('DELETE', 'basic', data, pk), m.BasicReplica)


def run(*items: Item) -> list[Item]:
    apply_batch(list(items))
    return list(items)


def row(pk: int) -> tuple[Any, ...] | None:
    found = m.BasicReplica.objects.filter(pk=pk).values_list('cqrs_revision', 'name', 'counter').first()
    return tuple(found) if found else None


@pytest.fixture(params=['sql', 'orm'])
def lane(request, monkeypatch) -> str:
    """Every rule holds on both write paths of the bulk lane (the ORM one is the other vendors')."""
    if request.param == 'orm':
        monkeypatch.setattr(_SqlPlan, 'of', classmethod(lambda cls, model, conn: None))
    return str(request.param)


# -- round trips ----------------------------------------------------------------------------------


def _statements(*items: Item) -> list[str]:
    with CaptureQueriesContext(connections['default']) as queries:
        run(*items)
    assert all(item.result for item in items)
    return [q['sql'] for q in queries.captured_queries]


def test_a_single_event_batch_is_three_round_trips() -> None:
    """BEGIN, one read (absent-row locks, rows and tombstones), one write that ends with the
    COMMIT: no savepoint, no second read (it was 9 statements). Django still logs its own COMMIT
    at the end of the block, which then finds no open transaction and sends nothing."""
    created = _statements(save(1, 0))
    assert len(created) == 4, created
    assert created[0] == 'BEGIN' and created[-1] == 'COMMIT'
    assert 'pg_advisory_xact_lock' in created[1] and 'FOR UPDATE' in created[1]
    assert 'unnest(' in created[2] and 'ON CONFLICT' in created[2]
    assert created[2].endswith(';\nCOMMIT')
    assert not any('SAVEPOINT' in sql for sql in created)
    assert len(_statements(save(1, 1))) == 4  # an update
    assert len(_statements(delete(1, 2))) == 4  # a delete and its tombstone: one write
    assert len(_statements(save(1, 3))) == 4  # re-created: the tombstone goes in the same write
    assert row(1) == (3, 'r3', 3)
    assert not ReplicaTombstone.objects.exists()


def test_a_large_batch_is_still_three_round_trips() -> None:
    items = [save(pk, 0) for pk in range(1, 301)] + [delete(pk, 1) for pk in range(1, 11)]
    statements = _statements(*items)
    assert len(statements) == 4 and statements[2].endswith(';\nCOMMIT')
    assert m.BasicReplica.objects.count() == 290
    assert ReplicaTombstone.objects.count() == 10


# -- failure of the bulk write --------------------------------------------------------------------


def test_a_failing_bulk_write_reruns_the_batch_through_the_hook_lane(lane, caplog) -> None:
    caplog.set_level(logging.WARNING, 'django-cqrs')
    m.BasicReplica.objects.create(id=3, name='old', counter=0, cqrs_revision=5, cqrs_updated=T0)
    items = run(
        save(1, 0),
        save(2, 0, name='x' * 200),  # too long for the column: the upsert fails in the database
        save(3, 4),  # older than the stored row: skipped, acknowledged
        save(4, 0, counter='not a number'),  # fails in Python
        delete(5, 1),
    )
    assert [bool(i.result) for i in items] == [True, False, True, False, True]
    assert type(items[1].error).__name__ == 'DataError'
    assert items[0].error is None and items[2].error is None
    assert items[2].skipped == 'older revision' and items[0].skipped is None
    assert row(1) == (0, 'r0', 0) and row(2) is None and row(3) == (5, 'old', 0) and row(4) is None
    assert ReplicaTombstone.objects.filter(pk_value='5').exists()
    failures = [r for r in caplog.records if 'CQRS bulk apply of basic events failed' in r.getMessage()]
    assert len(failures) == 1 and failures[0].getMessage().endswith('applying one by one.')


def test_the_rerun_keeps_the_other_models_bulk_writes(caplog) -> None:
    caplog.set_level(logging.WARNING, 'django-cqrs')
    code = Item(
        TransportPayload(
            'SAVE', 'code', {'code': 'a', 'name': 'n', 'cqrs_revision': 0, 'cqrs_updated': ts(0)}, 'a'
        ),
        m.CodeReplica,
    )
    items = run(code, save(1, 0), save(2, 0, name='x' * 200))
    assert [bool(i.result) for i in items] == [True, True, False]
    assert m.CodeReplica.objects.get(pk='a').name == 'n'
    assert row(1) == (0, 'r0', 0)
    assert sum('bulk apply of basic' in r.getMessage() for r in caplog.records) == 1
    assert not any('bulk apply of code' in r.getMessage() for r in caplog.records)


def test_a_validation_error_in_the_bulk_lane_fails_only_its_event() -> None:
    good, bad = uuid.uuid4(), uuid.uuid4()
    items = run(typed(good, 0), typed(bad, 0, flag='not a bool'))
    assert [bool(i.result) for i in items] == [True, False]
    assert type(items[1].error).__name__ == 'ValidationError'
    assert list(m.TypedReplica.objects.values_list('pk', flat=True)) == [good]


def test_every_result_is_reset_before_the_rerun(monkeypatch) -> None:
    """The first attempt folds (and sets results), then its write fails; the rerun's results win."""
    calls = []
    original = apply_module._BulkLane._write_sql

    def failing_once(self, rows, commits=False):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError('boom')
        return original(self, rows, commits)

    monkeypatch.setattr(apply_module._BulkLane, '_write_sql', failing_once)
    m.BasicReplica.objects.create(id=1, name='old', counter=0, cqrs_revision=1, cqrs_updated=T0)
    items = run(save(1, 1), save(2, 0))  # a duplicate (skipped) and a create
    assert [bool(i.result) for i in items] == [True, True]
    assert [i.skipped for i in items] == ['duplicate revision', None]
    assert len(calls) == 1, 'the rerun took the hook lane'
    assert row(2) == (0, 'r0', 0)


def test_the_write_does_not_commit_a_callers_transaction() -> None:
    """Inside an atomic block of the caller (a test, a management command), the batch is a
    savepoint: its writes must not end the caller's transaction."""
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        statements = _statements(save(5, 0))
        assert not any(sql.endswith('COMMIT') for sql in statements), statements
        assert row(5) == (0, 'r0', 0)
        raise RuntimeError
    assert row(5) is None


def test_a_batch_with_a_hook_lane_event_is_committed_by_django(monkeypatch) -> None:
    monkeypatch.setattr(apply_module, '_bulk_eligible', lambda model: model is not m.TypedReplica)
    statements = _statements(save(6, 0), typed(uuid.uuid4(), 0))
    assert not any(sql.endswith(';\nCOMMIT') for sql in statements), statements
    assert row(6) == (0, 'r0', 0)


# -- unnest upsert: values and fencing ------------------------------------------------------------


def typed(pk: uuid.UUID, rev: int, **values: Any) -> Item:
    data = {
        'id': str(pk),
        'char': 'c',
        'integer': 1,
        'amount': '1.5',
        'when': None,
        'day': None,
        'flag': False,
        'maybe': None,
        'publisher': None,
        'cqrs_revision': rev,
        'cqrs_updated': ts(rev),
    }
    data.update(values)
    return Item(TransportPayload('SAVE', 'typed', data, str(pk)), m.TypedReplica)


TYPED_CASES = [
    {},
    {
        'char': 'quote " backslash \\ comma , brace { } NULL',
        'integer': -2147483648,
        'amount': '12345678901234567890.0123456789',
        'when': '2024-05-01T12:30:45.123456+02:00',
        'day': '2024-02-29',
        'flag': True,
        'maybe': 'NULL',
        'publisher': 7,
    },
    {'char': '', 'maybe': '', 'amount': 0, 'integer': '42', 'flag': 't', 'when': '2024-05-01 10:00:00+00:00'},
    {'char': 'ünïcödé ✓', 'amount': decimal.Decimal('-0.0000000001'), 'day': '1999-12-31'},
]


def _stored(pk: uuid.UUID) -> dict[str, Any]:
    return m.TypedReplica.objects.filter(pk=pk).values().get()


def test_unnest_upsert_stores_every_type_as_the_hook_lane_does(monkeypatch) -> None:
    keys = [uuid.uuid4() for _ in TYPED_CASES]
    with CaptureQueriesContext(connections['default']) as queries:
        items = run(*[typed(k, 0, **case) for k, case in zip(keys, TYPED_CASES)])
    assert all(i.result for i in items), [i.error for i in items]
    assert any('unnest(' in q['sql'] and 'INSERT' in q['sql'] for q in queries.captured_queries)
    bulk = [_stored(k) for k in keys]
    m.TypedReplica.objects.all().delete()
    monkeypatch.setattr(apply_module, '_bulk_eligible', lambda model: False)
    items = run(*[typed(k, 0, **case) for k, case in zip(keys, TYPED_CASES)])
    assert all(i.result for i in items)
    assert bulk == [_stored(k) for k in keys]
    assert bulk[1]['char'] == TYPED_CASES[1]['char'] and bulk[1]['maybe'] == 'NULL'
    assert bulk[1]['when'] == dt.datetime(2024, 5, 1, 10, 30, 45, 123456, tzinfo=dt.timezone.utc)
    assert bulk[1]['amount'] == decimal.Decimal('12345678901234567890.0123456789')
    assert bulk[0]['when'] is None and bulk[0]['maybe'] is None and bulk[0]['publisher'] is None


def test_unnest_upsert_updates_only_the_fields_sent_and_honours_the_fence(cqrs_logs) -> None:
    key = uuid.uuid4()
    run(typed(key, 1, char='one', maybe='kept'))
    items = run(
        typed(key, 0, char='older'),  # an older revision: skipped
        typed(key, 1, char='dup'),  # a duplicate: skipped
        typed(key, 3, char='three', integer=3),  # a gap: applied, logged
    )
    assert all(i.result for i in items)
    assert [i.skipped for i in items] == ['older revision', 'duplicate revision', None]
    stored = _stored(key)
    assert (stored['cqrs_revision'], stored['char'], stored['integer'], stored['maybe']) == (
        3,
        'three',
        3,
        None,
    )
    text = cqrs_logs.text
    assert f'Wrong CQRS sync order: pk = {key}, cqrs_revision = new 0 / existing 1 (typed).' in text
    assert f'Received duplicate CQRS data: pk = {key}, cqrs_revision = 1 (typed).' in text
    assert f'Lost or filtered out 1 CQRS packages: pk = {key}, cqrs_revision = 3 (typed)' in text


def test_fencing_and_tombstones_on_both_write_paths(lane, cqrs_logs) -> None:
    run(save(1, 2), save(2, 0))
    items = run(
        save(1, 1),  # older: skipped
        delete(2, 1),
        save(2, 0),  # older than the delete: hidden by the tombstone
        save(3, 0, signal='SYNC'),
    )
    assert all(i.result for i in items)
    assert [i.skipped for i in items] == ['older revision', None, 'deleted row', None]
    assert row(1) == (2, 'r2', 2) and row(2) is None and row(3) == (0, 'r0', 0)
    assert ReplicaTombstone.objects.get(cqrs_id='basic', pk_value='2').cqrs_revision == 1
    run(delete(2, 0))  # an older delete does not move the tombstone back
    assert ReplicaTombstone.objects.get(cqrs_id='basic', pk_value='2').cqrs_revision == 1
    run(save(2, 5, 'reborn'))  # re-created after the delete
    assert row(2) == (5, 'reborn', 5) and not ReplicaTombstone.objects.filter(pk_value='2').exists()
    run(save(1, 0, 'repaired', signal='SYNC'))  # an older SYNC (earlier in time): skipped
    assert row(1) == (2, 'r2', 2)
    assert 'Stale CQRS sync skipped: pk = 1' in cqrs_logs.text


def test_models_without_an_array_plan_use_bulk_create() -> None:
    assert _SqlPlan._build(m.HookLog, connection) is None  # JSON columns
    assert _SqlPlan._build(m.TypedReplica, connection) is not None
    assert _SqlPlan._build(m.CodeReplica, connection) is not None


@pytest.mark.parametrize(
    'values',
    [
        ['a', '', 'NULL', None, 'x"y', 'back\\slash', '{,}', ' spaced ', 'ünï'],
        [1, -5, None, 2**40],
        [True, False, None],
        [decimal.Decimal('1.50'), None, decimal.Decimal('-0.001')],
        [uuid.UUID(int=1), None],
        [dt.date(2024, 1, 2), None],
    ],
)
def test_array_literals_round_trip(values: list[Any]) -> None:
    types = {str: 'text', int: 'bigint', bool: 'boolean', decimal.Decimal: 'numeric'}
    types.update({uuid.UUID: 'uuid', dt.date: 'date'})
    cast = types[type(values[0])]
    param = _array_param(values)
    assert isinstance(param, str)
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT %s::{cast}[]', [param])
        assert cursor.fetchone()[0] == values


def test_unknown_element_types_are_left_to_the_driver() -> None:
    values = [dt.timedelta(seconds=1), None]
    assert _array_param(values) is values


# -- concurrent bulk-lane workers -----------------------------------------------------------------


def test_concurrent_bulk_batches_end_at_the_newest_revision() -> None:
    """Workers applying shuffled revisions of the same (initially absent) rows in bulk-lane
    batches: the absent-row locks are taken before the one read, so nobody overwrites a newer row."""
    pks = list(range(100, 110))
    rng = random.Random(7)
    streams = []
    for _ in range(3):
        events = [(pk, rev) for pk in pks for rev in range(6)]
        rng.shuffle(events)
        streams.append([events[i : i + 7] for i in range(0, len(events), 7)])
    barrier = threading.Barrier(len(streams))
    errors: list[BaseException] = []

    def work(batches: list[list[tuple[int, int]]]) -> None:
        try:
            barrier.wait(timeout=10)
            for batch in batches:
                items = [save(pk, rev) for pk, rev in batch]
                apply_batch(items)
                failed = [i.error for i in items if not i.result]
                assert failed == [], failed  # sorted locks: no deadlock between bulk lanes
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert {pk: row(pk) for pk in pks} == dict.fromkeys(pks, (5, 'r5', 5))


# -- other vendors: the ORM path ------------------------------------------------------------------


def _tables(alias: str) -> None:
    with connections[alias].schema_editor() as editor:
        editor.create_model(m.BasicReplica)
        editor.create_model(ReplicaTombstone)


@pytest.fixture
def sqlite(django_db_blocker: Any, tmp_path: Any) -> Iterator[str]:
    config = {'ENGINE': 'django.db.backends.sqlite3', 'NAME': str(tmp_path / 'replica.sqlite3')}
    with services.django_alias('bulk_lane_sqlite', config) as alias, django_db_blocker.unblock():
        _tables(alias)
        yield alias


@pytest.fixture
def mariadb(django_db_blocker: Any) -> Iterator[str]:
    with (
        services.mariadb_settings('cqrs_bulk') as config,
        services.django_alias('bulk_lane_mariadb', config) as alias,
        django_db_blocker.unblock(),
    ):
        _tables(alias)
        yield alias


@pytest.mark.parametrize('vendor', ['sqlite', 'mariadb'])
def test_other_vendors_apply_with_the_same_rules(vendor, request, monkeypatch, caplog) -> None:
    """SQLite: the bulk lane through the ORM. MariaDB has no upsert on a given key: the hook lane,
    without trying the bulk lane first."""
    alias = request.getfixturevalue(vendor)
    monkeypatch.setattr(apply_module, 'replica_db', lambda model: alias)
    monkeypatch.setattr(router, 'db_for_write', lambda model, **hints: alias)
    manager = m.BasicReplica.objects.using(alias)
    items = run(save(1, 0), save(1, 2), save(2, 0), save(3, 1))
    assert all(i.result for i in items) and items[0].skipped is None
    with CaptureQueriesContext(connections[alias]) as queries:
        items = run(save(1, 1), delete(2, 1), save(2, 0), save(3, 2, 'three'))
    assert all(i.result for i in items), [i.error for i in items]
    assert [i.skipped for i in items] == ['older revision', None, 'deleted row', None]
    assert not any('advisory' in q['sql'] or 'unnest' in q['sql'] for q in queries.captured_queries)
    assert dict(manager.values_list('pk', 'cqrs_revision')) == {1: 2, 3: 2}
    assert manager.get(pk=3).name == 'three'
    tomb = ReplicaTombstone.objects.using(alias).get(cqrs_id='basic', pk_value='2')
    assert tomb.cqrs_revision == 1
    assert not m.BasicReplica.objects.exists()  # nothing went to the default database
    assert not any('bulk apply' in r.getMessage() for r in caplog.records)
    upserts = any('ON CONFLICT' in q['sql'] for q in queries.captured_queries)
    assert upserts == (vendor == 'sqlite')
