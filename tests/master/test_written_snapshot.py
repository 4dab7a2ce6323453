"""On PostgreSQL the fused statement also returns the serialized columns of the row it wrote, and
the event is serialized from them at commit: no read-back query. Any other statement that may
write in the same transaction (not a SELECT, a savepoint, or another save's fused statement)
drops the snapshots, and the events read their committed rows as before.

The broker is down in these tests (``produce`` returns False), so every payload is recorded by the
patched ``produce`` and every event stays in the outbox.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from dj_cqrs.master import outbox, publisher
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def produce():
    outbox.delivered.take()
    publisher._breaker['open_until'] = 0.0
    assert outbox.table_exists('default')
    with mock.patch('dj_cqrs.controller.producer.produce', return_value=False) as produce:
        yield produce
    outbox.delivered.take()


def published(produce) -> list[dict]:
    return [call[0][0].instance_data for call in produce.call_args_list]


def reads_of(queries, table: str) -> list[str]:
    return [q['sql'] for q in queries if q['sql'].startswith('SELECT') and f'"{table}"' in q['sql']]


def test_a_save_in_a_transaction_is_published_without_reading_its_row(produce):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        obj = m.BasicMaster.objects.create(name='a', counter=3)
    assert reads_of(queries, 'testapp_basicmaster') == []
    row = m.BasicMaster.objects.get(pk=obj.pk)
    data = published(produce)[0]
    assert (data['id'], data['name'], data['counter']) == (obj.pk, 'a', 3)
    assert (data['cqrs_revision'], data['cqrs_updated']) == (0, str(row.cqrs_updated))


def test_an_update_in_a_transaction_carries_the_incremented_revision(produce):
    obj = m.BasicMaster.objects.create(name='a')
    produce.reset_mock()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        obj.name = 'b'
        obj.save()
    assert reads_of(queries, 'testapp_basicmaster') == []
    assert [(d['name'], d['cqrs_revision']) for d in published(produce)] == [('b', 1)]


def test_typed_columns_come_back_as_a_read_would_give_them(produce):
    values = {
        'char': 'x',
        'integer': 7,
        'amount': Decimal('12.5000000001'),
        'when': dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
        'day': dt.date(2026, 5, 6),
        'flag': True,
        'maybe': None,
    }
    with transaction.atomic():
        fast = m.TypedMaster.objects.create(id=uuid.uuid4(), **values)
    produce_calls = published(produce)
    # The same row, serialized after a read-back (a write to another table drops the snapshot).
    with transaction.atomic():
        slow = m.TypedMaster.objects.create(id=uuid.uuid4(), **values)
        m.Book.objects.create(title='drops the snapshot', author=m.Author.objects.create(name='w'))
    by_id = {d['id']: d for d in published(produce)}
    snap, read = by_id[str(fast.pk)], by_id[str(slow.pk)]
    assert produce_calls[0] == snap
    assert {k: v for k, v in snap.items() if k not in ('id', 'cqrs_updated')} == {
        k: v for k, v in read.items() if k not in ('id', 'cqrs_updated')
    }
    assert snap['amount'] == '12.5000000001' and snap['when'] == '2026-01-02 03:04:05.678000+00:00'


def test_a_trigger_that_changes_the_row_is_in_the_event(produce):
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE FUNCTION cqrs_test_upper() RETURNS trigger AS $$ '
            'BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$ LANGUAGE plpgsql'
        )
        cursor.execute(
            'CREATE TRIGGER cqrs_test_upper BEFORE INSERT OR UPDATE ON testapp_basicmaster '
            'FOR EACH ROW EXECUTE FUNCTION cqrs_test_upper()'
        )
    try:
        with transaction.atomic():
            m.BasicMaster.objects.create(name='in a transaction')
        m.BasicMaster.objects.create(name='autocommit')
    finally:
        with connection.cursor() as cursor:
            cursor.execute('DROP TRIGGER cqrs_test_upper ON testapp_basicmaster')
            cursor.execute('DROP FUNCTION cqrs_test_upper()')
    assert [d['name'] for d in published(produce)] == ['IN A TRANSACTION', 'AUTOCOMMIT']


def test_a_write_to_the_row_after_the_save_is_in_the_event(produce):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        obj = m.BasicMaster.objects.create(name='saved')
        m.BasicMaster.objects.filter(pk=obj.pk).update(name='changed in SQL')
    assert len(reads_of(queries, 'testapp_basicmaster')) == 1
    assert published(produce)[0]['name'] == 'changed in SQL'


def test_raw_sql_after_the_save_drops_the_snapshot(produce):
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='saved')
        with connection.cursor() as cursor:
            cursor.execute('update testapp_basicmaster set counter = 41 where id = %s', [obj.pk])
    assert published(produce)[0]['counter'] == 41


def test_reads_savepoints_and_other_saves_keep_the_snapshots(produce):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        first = m.BasicMaster.objects.create(name='first')
        assert m.BasicMaster.objects.filter(pk=first.pk).exists()
        with transaction.atomic():
            second = m.BasicMaster.objects.create(name='second')
        with pytest.raises(RuntimeError), transaction.atomic():
            m.BasicMaster.objects.create(name='rolled back')
            raise RuntimeError
        third = m.TypedMaster.objects.create(id=uuid.uuid4(), char='third')
    # (the one read is the test's own exists())
    assert len(reads_of(queries, 'testapp_basicmaster')) == 1
    assert reads_of(queries, 'testapp_typedmaster') == []
    assert [d['id'] for d in published(produce)] == [first.pk, second.pk, str(third.pk)]


def test_a_second_save_of_the_object_publishes_its_final_committed_state(produce):
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='first')
        obj.name = 'second'
        obj.save()
        obj.name = 'never saved'
    assert [(d['name'], d['cqrs_revision']) for d in published(produce)] == [('second', 0)]


def test_a_save_rolled_back_to_a_savepoint_is_not_in_the_event(produce):
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='kept')
        with pytest.raises(RuntimeError), transaction.atomic():
            obj.name = 'rolled back'
            obj.save()
            raise RuntimeError
    assert [d['name'] for d in published(produce)] == ['kept']
    assert m.BasicMaster.objects.get(pk=obj.pk).name == 'kept'


def test_a_row_deleted_later_in_the_transaction_publishes_no_save(produce):
    with transaction.atomic():
        kept = m.BasicMaster.objects.create(name='kept')
        gone = m.BasicMaster.objects.create(name='gone')
        gone_pk = gone.pk
        m.BasicMaster.objects.filter(pk=gone_pk).delete()
    types = [(call[0][0].signal_type, call[0][0].pk) for call in produce.call_args_list]
    assert types == [('SAVE', kept.pk), ('DELETE', gone_pk)]


def test_the_watch_outlives_other_execute_wrappers_and_is_installed_once(produce):
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with transaction.atomic():
        m.BasicMaster.objects.create(name='a')
    wrappers = list(connection.execute_wrappers)
    with connection.execute_wrapper(spy), transaction.atomic():
        m.BasicMaster.objects.create(name='b')
    assert connection.execute_wrappers == wrappers
    assert sum(isinstance(w, publisher.SnapshotWatch) for w in wrappers) == 1
    assert seen and seen[0].startswith('INSERT INTO "testapp_basicmaster"')
    assert [d['name'] for d in published(produce)] == ['a', 'b']


def test_the_watch_forgets_ended_transactions(produce):
    watch = publisher.SnapshotWatch.of(connections['default'])
    with transaction.atomic():
        m.BasicMaster.objects.create(name='committed')
        assert len(watch.callbacks) == 1
    assert watch.callbacks == []  # settled by the publish at commit
    with pytest.raises(RuntimeError), transaction.atomic():
        m.BasicMaster.objects.create(name='rolled back')
        raise RuntimeError
    with transaction.atomic():
        obj = m.BasicMaster.objects.create(name='next')
        assert [c.instance for c in watch.callbacks] == [obj]
    assert [d['name'] for d in published(produce)] == ['committed', 'next']
