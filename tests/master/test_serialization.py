"""``instance_data`` of SAVE / SYNC events (UPSTREAM_SPEC §4.6, §2.15)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from dj_cqrs.core import codec
from dj_cqrs.testing import capture_events
from dj_cqrs.utils import bulk_relate_cqrs_serialization
from tests.master._helpers import db_tx
from tests.testapp import models as m

pytestmark = db_tx

UTC = dt.timezone.utc
CQRS_UPDATED_RE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00$')
BIG = Decimal('12345678901234567890.1234567891')


def _typed(**kwargs):
    publisher = m.Publisher.objects.create(name='pub')
    values = {
        'char': 'text/with/slashes é',
        'integer': 42,
        'amount': BIG,
        'when': dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        'day': dt.date(2024, 5, 1),
        'flag': True,
        'maybe': None,
        'publisher': publisher,
    }
    values.update(kwargs)
    return m.TypedMaster.objects.create(**values), publisher


def test_default_serialization_formats():
    with capture_events() as events:
        obj, publisher = _typed()
    (event,) = events.of('typed')
    data = event.instance_data
    # _meta.fields order (as upstream: the mixin's fields are declared first).
    assert list(data) == [f.name for f in m.TypedMaster._meta.fields]
    assert set(data) == {
        'id',
        'char',
        'integer',
        'amount',
        'when',
        'day',
        'flag',
        'maybe',
        'publisher',
        'cqrs_revision',
        'cqrs_updated',
    }
    assert data['id'] == str(obj.pk)
    assert re.fullmatch(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', data['id'])
    assert data['char'] == 'text/with/slashes é'
    assert data['integer'] == 42
    # Exact either way (a JSON number with all its digits, or a string): never a lossy float.
    assert not isinstance(data['amount'], float)
    assert Decimal(str(data['amount'])) == BIG
    assert data['when'] == '2024-05-01 10:00:00.123456+00:00'
    assert data['day'] == '2024-05-01'
    assert data['flag'] is True
    assert data['maybe'] is None
    assert data['publisher'] == publisher.pk  # raw id under the field name
    assert 'publisher_id' not in data
    assert data['cqrs_revision'] == 0
    assert CQRS_UPDATED_RE.match(data['cqrs_updated'])
    assert data['cqrs_updated'] == str(m.TypedMaster.objects.get(pk=obj.pk).cqrs_updated)
    assert event.to_dict()['instance_pk'] == str(obj.pk)


def test_datetime_without_microseconds_has_no_fraction():
    with capture_events() as events:
        _typed(when=dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC), day=None, publisher=None)
    data = events.of('typed')[0].instance_data
    assert data['when'] == '2024-05-01 10:00:00+00:00'
    assert data['day'] is None
    assert data['publisher'] is None


def test_decimal_is_exact_on_the_wire_and_in_the_replica():
    with capture_events(publish=True) as events:
        obj, _ = _typed()
    body = codec.encode_fields(events.of('typed')[0].to_dict())
    assert re.search(rb'"amount":"?12345678901234567890\.1234567891"?,', body)
    assert b'"char":"text\\/with\\/slashes \\u00e9"' in body
    replica = m.TypedReplica.objects.get(pk=obj.pk)
    assert replica.amount == BIG
    assert replica.when == dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert replica.day == dt.date(2024, 5, 1)
    assert replica.publisher == obj.publisher_id
    assert replica.char == 'text/with/slashes é'
    assert replica.id == obj.pk and isinstance(replica.id, uuid.UUID)


def test_cqrs_fields_subset_always_adds_sync_fields():
    with capture_events(publish=True) as events:
        obj = m.FieldsMaster.objects.create(name='n', secret='hide me')
    data = events[0].instance_data
    assert list(data) == ['id', 'name', 'cqrs_revision', 'cqrs_updated']
    assert data['id'] == obj.pk
    assert 'secret' not in data
    assert m.FieldsReplica.objects.get(pk=obj.pk).name == 'n'


def test_custom_serializer_output_plus_sync_fields():
    publisher = m.Publisher.objects.create(name='P')
    with capture_events(publish=True) as events, transaction.atomic():
        author = m.Author.objects.create(name='A', publisher=publisher)
        # Saved after the author in the same transaction: serialization at commit sees them.
        m.Book.objects.create(title='b1', author=author)
        m.Book.objects.create(title='b2', author=author)
    (event,) = events.of('author')
    data = event.instance_data
    assert {k: v for k, v in data.items() if k != 'cqrs_updated'} == {
        'id': author.pk,
        'name': 'A',
        'publisher': {'id': publisher.pk, 'name': 'P'},
        'books': ['b1', 'b2'],
        'cqrs_revision': 0,
    }
    assert data['cqrs_updated'] == str(m.Author.objects.get(pk=author.pk).cqrs_updated)
    replica = m.AuthorReplica.objects.get(pk=author.pk)
    assert (replica.name, replica.publisher_name, sorted(replica.books)) == ('A', 'P', ['b1', 'b2'])


def _serialization_queries(ctx):
    return [
        q['sql']
        for q in ctx.captured_queries
        if q['sql'].startswith('SELECT') and ('"testapp_author"' in q['sql'] or '"testapp_book"' in q['sql'])
    ]


def test_custom_serializer_refetches_with_relate_cqrs_serialization():
    publisher = m.Publisher.objects.create(name='P')
    with capture_events() as events, CaptureQueriesContext(connection) as ctx:
        m.Author.objects.create(name='A', publisher=publisher)
    selects = _serialization_queries(ctx)
    # One SELECT of the author joined to its publisher (select_related) + one prefetch of the books.
    assert len(selects) == 2, selects
    assert 'JOIN "testapp_publisher"' in selects[0]
    assert 'FROM "testapp_book"' in selects[1]
    assert events[0].instance_data['publisher'] == {'id': publisher.pk, 'name': 'P'}


def test_bulk_relate_cqrs_serialization_loads_all_instances_at_once():
    publisher = m.Publisher.objects.create(name='P')
    with capture_events() as events, CaptureQueriesContext(connection) as plain, transaction.atomic():
        for i in range(5):
            m.Author.objects.create(name=f'plain{i}', publisher=publisher)
    assert len(_serialization_queries(plain)) == 10
    assert len(events) == 5

    with (
        capture_events() as events,
        CaptureQueriesContext(connection) as bulk,
        bulk_relate_cqrs_serialization(),
        transaction.atomic(),
    ):
        for i in range(5):
            m.Author.objects.create(name=f'bulk{i}', publisher=publisher)
    assert len(_serialization_queries(bulk)) == 2
    assert sorted(e.instance_data['name'] for e in events) == [f'bulk{i}' for i in range(5)]
    assert all(e.instance_data['publisher'] == {'id': publisher.pk, 'name': 'P'} for e in events)


def test_bulk_relate_cqrs_serialization_as_decorator_and_cqrs_id_filter():
    from dj_cqrs.state import cqrs_state

    @bulk_relate_cqrs_serialization(cqrs_id='basic')
    def work():
        assert cqrs_state.bulk_relate_cm is not None
        with transaction.atomic():
            for i in range(3):
                m.Author.objects.create(name=f'a{i}')

    with capture_events() as events, CaptureQueriesContext(connection) as ctx:
        work()
    assert cqrs_state.bulk_relate_cm is None
    # Only 'basic' instances are collected: the authors fall back to one query (+prefetch) each.
    assert len(_serialization_queries(ctx)) == 6
    assert len(events) == 3


def test_bulk_relate_state_restored_on_exception():
    from dj_cqrs.state import cqrs_state

    with pytest.raises(ZeroDivisionError), bulk_relate_cqrs_serialization():
        assert cqrs_state.bulk_relate_cm is not None
        1 / 0  # noqa: B018
    assert cqrs_state.bulk_relate_cm is None


def test_serializer_model_deleted_before_commit_logs_and_skips(cqrs_logs):
    with capture_events() as events, transaction.atomic():
        author = m.Author.objects.create(name='gone')
        pk = author.pk
        m.Author.objects.filter(pk=pk).delete()  # queryset delete: no instance event for `author`
    assert [e.signal_type for e in events] == ['DELETE']
    assert f"Can't produce message from master model 'Author': The instance doesn't exist (pk={pk})" in [
        r.getMessage() for r in cqrs_logs.records if r.levelname == 'ERROR'
    ]


def test_unimportable_serializer_raises_import_error(monkeypatch):
    from dj_cqrs.master.serialization import class_serialization

    author = m.Author.objects.create(name='x')
    monkeypatch.setattr(m.Author, 'CQRS_SERIALIZER', 'tests.testapp.serializers.Missing')
    monkeypatch.delattr(m.Author, '_cqrs_serializer_class', raising=False)
    with pytest.raises(
        ImportError, match=r"Model <class 'tests.testapp.models.Author'>: CQRS_SERIALIZER can't be imported."
    ):
        class_serialization(author)


def test_serializer_sync_uses_in_memory_instance_without_query():
    author = m.Author.objects.create(name='stored')
    author = m.Author.objects.select_related('publisher').prefetch_related('books').get(pk=author.pk)
    author.name = 'in memory, unsaved'
    with capture_events() as events, CaptureQueriesContext(connection) as ctx:
        assert author.cqrs_sync() is True
    assert _serialization_queries(ctx) == []
    assert [(e.signal_type, e.instance_data['name']) for e in events] == [('SYNC', 'in memory, unsaved')]


def test_to_cqrs_dict_is_callable_directly():
    obj = m.BasicMaster.objects.create(name='a', counter=2)
    data = obj.to_cqrs_dict()
    assert {k: data[k] for k in ('id', 'name', 'counter', 'cqrs_revision')} == {
        'id': obj.pk,
        'name': 'a',
        'counter': 2,
        'cqrs_revision': 0,
    }
    assert CQRS_UPDATED_RE.match(data['cqrs_updated'])
