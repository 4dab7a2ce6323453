"""On PostgreSQL a save writes its outbox event in the row's own statement (one round trip).

The broker is down in these tests, so every event stays in the outbox where the test can read it.
"""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from dj_cqrs.master import outbox, publisher
from dj_cqrs.master.outbox import OutboxEvent
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def broker_down():
    outbox.delivered.take()
    publisher._breaker['open_until'] = 0.0
    assert outbox.table_exists('default')  # (cached: not one of the statements counted below)
    with mock.patch('dj_cqrs.controller.producer.produce', return_value=False) as produce:
        yield produce
    outbox.delivered.take()


def events() -> list[tuple[str, str, str]]:
    return list(OutboxEvent.objects.order_by('id').values_list('cqrs_id', 'signal_type', 'instance_pk'))


def test_autocommit_create_is_one_statement_with_its_event(broker_down):
    with CaptureQueriesContext(connection) as queries:
        obj = m.BasicMaster(name='a')
        obj.save()
    assert len(queries) == 1, [q['sql'] for q in queries]
    assert '"dj_cqrs_outbox"' in queries[0]['sql']
    assert obj.pk is not None and obj.cqrs_revision == 0
    assert events() == [('basic', 'SAVE', str(obj.pk))]
    assert broker_down.call_count == 1
    assert broker_down.call_args[0][0].instance_data['name'] == 'a'  # serialized from memory


def test_autocommit_update_is_one_statement_and_reads_the_revision_back():
    obj = m.BasicMaster.objects.create(name='a')
    OutboxEvent.objects.all().delete()
    obj.name = 'b'
    with CaptureQueriesContext(connection) as queries:
        obj.save()
    assert len(queries) == 1, [q['sql'] for q in queries]
    assert obj.cqrs_revision == 1
    assert m.BasicMaster.objects.get(pk=obj.pk).cqrs_revision == 1
    assert events() == [('basic', 'SAVE', str(obj.pk))]


def test_a_failed_statement_writes_neither_row_nor_event():
    m.CodeMaster.objects.create(code='x')
    OutboxEvent.objects.all().delete()
    with pytest.raises(IntegrityError):
        m.CodeMaster(code='x').save(force_insert=True)
    assert events() == []
    assert m.CodeMaster.objects.count() == 1


def test_a_save_of_a_missing_row_is_fused_into_the_insert():
    obj = m.BasicMaster(id=4242, name='new')  # pk given: Django tries UPDATE first, then INSERT
    obj.save()
    assert events() == [('basic', 'SAVE', '4242')]
    assert m.BasicMaster.objects.get(pk=4242).name == 'new'


def test_a_model_without_returning_columns_gets_its_event_too():
    obj = m.TypedMaster(id=uuid.uuid4())
    with CaptureQueriesContext(connection) as queries:
        obj.save(force_insert=True)
    assert len(queries) == 1, [q['sql'] for q in queries]
    assert events() == [('typed', 'SAVE', str(obj.pk))]
    obj.save()  # an UPDATE that returns nothing to Django: the wrapper reads the event id itself
    assert events() == [('typed', 'SAVE', str(obj.pk))] * 2
    assert m.TypedMaster.objects.get(pk=obj.pk).cqrs_revision == 1


def test_tracked_fields_travel_in_the_fused_event():
    obj = m.TrackedMaster.objects.create(char_field='a')
    obj.char_field = 'b'
    obj.save()
    previous = list(OutboxEvent.objects.order_by('id').values_list('previous_data', flat=True))
    assert previous[1] is not None and '"char_field":"a"' in previous[1].replace(' ', '')


def test_update_fields_without_revision_write_no_event():
    obj = m.BasicMaster.objects.create(name='a')
    OutboxEvent.objects.all().delete()
    obj.name = 'quiet'
    obj.save(update_fields=['name'], update_cqrs_fields=False)
    assert events() == []
    assert m.BasicMaster.objects.get(pk=obj.pk).name == 'quiet'


def test_an_instance_that_is_not_synced_leaves_no_event():
    m.FilteredMaster.objects.create(name='hidden')
    m.FilteredMaster.objects.create(name='shown')
    assert [e[0] for e in events()] == ['filtered']


def test_in_a_transaction_one_statement_per_save_and_one_event_per_object():
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            obj = m.BasicMaster(name='a')
            obj.save()
            obj.name = 'b'
            obj.save()
        other = m.BasicMaster.objects.create(name='c')
    assert len(queries) == 2, [q['sql'] for q in queries]
    assert events() == [('basic', 'SAVE', str(obj.pk)), ('basic', 'SAVE', str(other.pk))]


def test_a_rolled_back_transaction_keeps_no_event():
    with pytest.raises(RuntimeError), transaction.atomic():
        m.BasicMaster.objects.create(name='a')
        raise RuntimeError
    assert events() == []


def test_after_commit_the_rows_of_a_transaction_are_read_in_one_query(broker_down):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        objs = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(30)]
        # A change the instances do not know about: events carry the committed state.
        m.BasicMaster.objects.filter(pk=objs[3].pk).update(name='changed in SQL')
    reads = [q['sql'] for q in queries if q['sql'].startswith('SELECT') and 'basicmaster' in q['sql']]
    assert len(reads) == 1, reads
    published = [call[0][0] for call in broker_down.call_args_list]
    assert [p.pk for p in published] == [o.pk for o in objs]
    assert published[3].instance_data['name'] == 'changed in SQL'
    assert published[4].instance_data['name'] == 'n4'


def test_a_row_deleted_later_in_the_transaction_is_reported_not_published(broker_down):
    with transaction.atomic():
        kept = m.BasicMaster.objects.create(name='kept')
        gone = m.BasicMaster.objects.create(name='gone')
        m.BasicMaster.objects.filter(pk=gone.pk).delete()
    published = [(call[0][0].signal_type, call[0][0].pk) for call in broker_down.call_args_list]
    # The SAVE of the vanished row is not published (its DELETE event is).
    assert published == [('SAVE', kept.pk), ('DELETE', gone.pk)]


def test_a_rolled_back_savepoint_drops_only_its_own_events(broker_down):
    with transaction.atomic():
        first = m.BasicMaster.objects.create(name='first')
        with pytest.raises(RuntimeError), transaction.atomic():
            m.BasicMaster.objects.create(name='rolled back')
            raise RuntimeError
        last = m.BasicMaster.objects.create(name='last')
    published = [call[0][0] for call in broker_down.call_args_list]
    assert [(p.pk, p.instance_data['name']) for p in published] == [(first.pk, 'first'), (last.pk, 'last')]
    assert [e[2] for e in events()] == [str(first.pk), str(last.pk)]


def test_a_proxy_save_is_fused_and_publishes_as_its_concrete_model():
    with CaptureQueriesContext(connection) as queries:
        obj = m.ProxyMaster.objects.create(name='via proxy')
    assert len(queries) == 1, [q['sql'] for q in queries]
    assert events() == [('basic', 'SAVE', str(obj.pk))]


def test_multi_table_inheritance_writes_the_event_with_its_own_insert_in_one_transaction():
    with CaptureQueriesContext(connection) as queries:
        obj = m.ChildMaster.objects.create(name='child', extra='x')
    statements = [q['sql'] for q in queries]
    assert not any(s.startswith('WITH') for s in statements), statements
    assert events() == [('child', 'SAVE', str(obj.pk))]
    obj.extra = 'y'
    obj.save()
    assert events() == [('child', 'SAVE', str(obj.pk))] * 2
    assert m.ChildMaster.objects.get(pk=obj.pk).cqrs_revision == 1
