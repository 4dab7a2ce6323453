"""``cqrs_bulk_dump`` from ``values_list`` rows (``dj_cqrs.ops.dump.row_plan``): for every common
field type the lines are the ones the per-instance path (``to_cqrs_dict``) writes, byte for byte,
with the same counts; models that need their instances keep the per-instance path.

The throwaway models live in an isolated app registry, with tables created for the test only.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, models
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext, isolate_apps

from dj_cqrs.mixins import MasterMixin
from dj_cqrs.ops import dump as dump_ops
from dj_cqrs.registry import MasterRegistry
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

UPDATED = dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)


class UpperCharField(models.CharField):
    """A CharField subclass with its own ``from_db_value``: not one of the known classes."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else value.upper()


def _model(name, cqrs_id, fields, **attrs):
    body = {
        '__module__': __name__,
        'Meta': type('Meta', (), {'app_label': 'testapp', 'db_table': f'dump_rows_{name.lower()}'}),
        'CQRS_ID': cqrs_id,
        **fields,
        **attrs,
    }
    return type(name, (MasterMixin,), body)


@pytest.fixture
def make_models():
    """Define throwaway master models (``make(name, cqrs_id, fields, **attrs)``) with tables."""
    created = []
    with isolate_apps('tests.testapp'):

        def make(name, cqrs_id, fields, **attrs):
            model = _model(name, cqrs_id, fields, **attrs)
            with connection.schema_editor() as editor:
                editor.create_model(model)
            created.append(model)
            return model

        try:
            yield make
        finally:
            with connection.schema_editor() as editor:
                for model in reversed(created):
                    editor.delete_model(model)
            for model in created:
                MasterRegistry.models.pop(model.CQRS_ID, None)


def _add(model, **values):
    """A row written without a save() (nothing to publish for these throwaway models)."""
    return model.objects.bulk_create([model(**values)])[0]


def _both(model, **kwargs):
    """(text, report) of the row path and of the per-instance path."""
    rows_out = io.StringIO()
    rows_report = dump_ops.dump(model, rows_out, **kwargs)
    instances_out = io.StringIO()
    with mock.patch.object(dump_ops, 'row_plan', return_value=None):
        instances_report = dump_ops.dump(model, instances_out, **kwargs)
    return (rows_out.getvalue(), rows_report), (instances_out.getvalue(), instances_report)


def _counts(report):
    return (
        report.processed,
        report.saved,
        report.vanished,
        [(pk, type(exc), str(exc)) for pk, exc in report.failures],
    )


def _assert_same(model, **kwargs):
    (rows_text, rows_report), (instances_text, instances_report) = _both(model, **kwargs)
    assert rows_text == instances_text
    assert _counts(rows_report) == _counts(instances_report)
    return rows_text, rows_report


def _all_types(make):
    target = make('DumpTarget', 'dump_rows_target', {'id': models.UUIDField(primary_key=True)})
    model = make(
        'DumpAllTypes',
        'dump_rows_all',
        {
            'id': models.BigAutoField(primary_key=True),
            'small': models.SmallIntegerField(null=True),
            'big': models.BigIntegerField(null=True),
            'positive': models.PositiveIntegerField(null=True),
            'flag': models.BooleanField(null=True),
            'ratio': models.FloatField(null=True),
            'char': models.CharField(max_length=50, null=True),
            'text': models.TextField(null=True),
            'slug': models.SlugField(null=True),
            'email': models.EmailField(null=True),
            'upper': UpperCharField(max_length=20, null=True),
            'amount': models.DecimalField(max_digits=30, decimal_places=10, null=True),
            'when': models.DateTimeField(null=True),
            'day': models.DateField(null=True),
            'clock': models.TimeField(null=True),
            'span': models.DurationField(null=True),
            'uid': models.UUIDField(null=True),
            'data': models.JSONField(null=True),
            'ip': models.GenericIPAddressField(null=True),
            'target': models.ForeignKey(target, null=True, on_delete=models.SET_NULL),
            'parent': models.ForeignKey('self', null=True, on_delete=models.SET_NULL),
        },
    )
    return target, model


def test_rows_and_instances_give_the_same_lines_for_every_field_type(make_models):
    target_model, model = _all_types(make_models)
    target = _add(target_model, id=uuid.UUID('12345678-1234-5678-1234-567812345678'))
    full = _add(
        model,
        small=-7,
        big=2**62,
        positive=3,
        flag=True,
        ratio=0.1,
        char='slash/and "quote" \u00e9\u2713',
        text='line\nbreak\ttab \\ back',
        slug='a-slug',
        email='a@b.example',
        upper='shout',
        amount=Decimal('-12345678901234567890.0123456789'),
        when=dt.datetime(2024, 5, 1, 12, 30, 15, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        day=dt.date(2024, 2, 29),
        clock=dt.time(23, 59, 58, 999999),
        span=dt.timedelta(days=-1, seconds=5, microseconds=7),
        uid=uuid.UUID('00000000-0000-0000-0000-000000000001'),
        data={'nested': [1, 2.5, None, True, 'x/y', '\u2713'], 'empty': {}},
        ip='2001:db8::1',
        target=target,
    )
    _add(model, parent=full)  # every other column null
    _add(
        model,
        flag=False,
        ratio=-0.0,
        char='',
        amount=Decimal('0'),
        when=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        clock=dt.time(0, 0),
        span=dt.timedelta(0),
        data='a JSON string',
        parent=full,
    )
    _add(model, data=[], amount=Decimal('1E+5'), ratio=1e300)
    _add(model, data=0, when=dt.datetime(2024, 6, 1, 0, 0, 0, 500000, tzinfo=dt.timezone.utc))
    model.objects.update(cqrs_updated=UPDATED, cqrs_revision=3)
    model.objects.filter(pk=full.pk).update(cqrs_updated=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc))

    assert dump_ops.row_plan(model, model._default_manager.all()) is not None
    text, report = _assert_same(model)
    assert (report.processed, report.saved, report.failures) == (5, 5, [])
    lines = text.split('\n')
    assert lines[0] == 'dump_rows_all'
    first = json.loads(lines[1])
    assert first['amount'] == '-12345678901234567890.0123456789'
    assert first['target'] == '12345678-1234-5678-1234-567812345678'
    assert first['upper'] == 'SHOUT'
    assert first['cqrs_updated'] == '2024-05-01 00:00:00+00:00'
    assert '\\/' in lines[1] and '\\u2713' in lines[1]
    for batch in (1, 2, 3):
        assert _assert_same(model, batch=batch)[0] == text


def test_a_row_that_cannot_be_serialized_is_counted_the_same_way(make_models):
    _, model = _all_types(make_models)
    rows = [_add(model, ratio=value) for value in (1.0, float('nan'), 2.0)]
    text, report = _assert_same(model, batch=2)
    assert (report.processed, report.saved) == (3, 2)
    assert [pk for pk, _ in report.failures] == [rows[1].pk]
    assert isinstance(report.failures[0][1], ValueError)
    assert [json.loads(line)['id'] for line in text.split('\n')[1:]] == [rows[0].pk, rows[2].pk]

    seen = []
    dump_ops.dump(model, io.StringIO(), on_failure=lambda pk, exc: seen.append(pk))
    assert seen == [rows[1].pk]


def test_fields_without_the_pk_and_pages_by_the_pk(make_models):
    model = make_models(
        'DumpNoPk',
        'dump_rows_no_pk',
        {'name': models.CharField(max_length=20), 'secret': models.CharField(max_length=20, default='s')},
        CQRS_FIELDS=('name',),
    )
    for i in range(7):
        _add(model, name=f'n{i}')
    plan = dump_ops.row_plan(model, model._default_manager.all())
    assert plan is not None
    assert plan.names == ('name', 'cqrs_revision', 'cqrs_updated')
    for batch in (1, 2, 3, 7, 100):
        text, report = _assert_same(model, batch=batch)
        assert report.processed == report.saved == 7
        assert [list(json.loads(line)) for line in text.split('\n')[1:]] == [
            ['name', 'cqrs_revision', 'cqrs_updated']
        ] * 7
        assert [json.loads(line)['name'] for line in text.split('\n')[1:]] == [f'n{i}' for i in range(7)]


def test_one_query_per_page(make_models):
    _, model = _all_types(make_models)
    for _ in range(5):
        _add(model)
    with CaptureQueriesContext(connection) as queries:
        dump_ops.dump(model, io.StringIO(), batch=2)
    selects = [q['sql'] for q in queries if 'dump_rows_dumpalltypes' in q['sql']]
    assert len(selects) == 3
    assert not any(' IN (' in sql for sql in selects)


def test_existing_models_give_the_same_lines():
    publisher = m.Publisher.objects.create(name='p/1')
    m.TypedMaster.objects.create(
        char='x', amount=Decimal('1.50'), publisher=publisher, day=dt.date(2024, 1, 2)
    )
    m.TypedMaster.objects.create()
    m.BasicMaster.objects.create(name='a')
    m.FieldsMaster.objects.create(name='f')
    m.CodeMaster.objects.create(code='c/1', name='n')
    m.TrackedMaster.objects.create(char_field='t', publisher=publisher)
    for model in (m.TypedMaster, m.BasicMaster, m.FieldsMaster, m.CodeMaster, m.TrackedMaster, m.Publisher):
        assert dump_ops.row_plan(model, model._default_manager.all()) is not None, model
        _, report = _assert_same(model, batch=1)
        assert report.saved == model.objects.count()


def test_a_to_cqrs_dict_override_is_still_used(make_models):
    def to_cqrs_dict(self, using=None, sync=False):
        data = super(type(self), self).to_cqrs_dict(using, sync=sync)
        data['extra'] = self.name.upper()
        return data

    model = make_models(
        'DumpOverride',
        'dump_rows_override',
        {'name': models.CharField(max_length=20)},
        to_cqrs_dict=to_cqrs_dict,
    )
    _add(model, name='abc')
    assert dump_ops.row_plan(model, model._default_manager.all()) is None
    out = io.StringIO()
    dump_ops.dump(model, out)
    assert json.loads(out.getvalue().split('\n')[1])['extra'] == 'ABC'


def test_a_relate_cqrs_serialization_override_keeps_the_instance_path(make_models):
    calls = []

    @classmethod
    def relate_cqrs_serialization(cls, queryset):
        calls.append(cls)
        return queryset

    model = make_models(
        'DumpRelate',
        'dump_rows_relate',
        {'name': models.CharField(max_length=20)},
        relate_cqrs_serialization=relate_cqrs_serialization,
    )
    _add(model, name='abc')
    assert dump_ops.row_plan(model, model._default_manager.all()) is None
    dump_ops.dump(model, io.StringIO())
    assert calls == [model]


def test_a_post_init_receiver_that_changes_values_keeps_the_instance_path(make_models):
    model = make_models('DumpPostInit', 'dump_rows_post_init', {'name': models.CharField(max_length=20)})

    def rename(sender, instance, **kwargs):
        instance.name = 'renamed'

    post_init.connect(rename, sender=model, weak=False)
    try:
        _add(model, name='abc')
        assert dump_ops.row_plan(model, model._default_manager.all()) is None
        out = io.StringIO()
        dump_ops.dump(model, out)
        assert json.loads(out.getvalue().split('\n')[1])['name'] == 'renamed'
    finally:
        post_init.disconnect(rename, sender=model)


def test_models_that_need_instances_keep_the_instance_path(make_models):
    class Manager(models.Manager):
        def get_queryset(self):
            return super().get_queryset().extra(select={'name': "'from extra'"})

    cases = [
        make_models(
            'DumpFile', 'dump_rows_file', {'upload': models.FileField(null=True)}
        ),  # FileDescriptor on the attname
        make_models(
            'DumpFromDb',
            'dump_rows_from_db',
            {'name': models.CharField(max_length=20)},
            from_db=classmethod(
                lambda cls, db, names, values: models.Model.from_db.__func__(cls, db, names, values)
            ),
        ),
        make_models(
            'DumpExtra',
            'dump_rows_extra',
            {'name': models.CharField(max_length=20), 'objects': Manager()},
        ),
        m.Author,  # CQRS_SERIALIZER
    ]
    for model in cases:
        assert dump_ops.row_plan(model, model.objects.all()) is None, model
    assert dump_ops.row_plan(m.BasicMaster, m.BasicMaster._default_manager.all()) is not None
