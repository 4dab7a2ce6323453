"""``MasterManager.bulk_create`` / ``bulk_update`` and the bulk signals (UPSTREAM_SPEC §2.4, §2.5, §4.10)."""

from __future__ import annotations

import pytest
from django.db import transaction

from dj_cqrs.signals import post_bulk_create, post_update
from dj_cqrs.testing import capture_events
from tests.master._helpers import db_revision, db_tx
from tests.testapp import models as m

pytestmark = db_tx


@pytest.fixture
def received():
    calls = []

    def on_create(sender, **kwargs):
        calls.append(('create', sender, [i.pk for i in kwargs['instances']], kwargs['using']))

    def on_update(sender, **kwargs):
        calls.append(('update', sender, [i.pk for i in kwargs['instances']], kwargs['using']))

    post_bulk_create.connect(on_create, weak=False)
    post_update.connect(on_update, weak=False)
    yield calls
    post_bulk_create.disconnect(on_create)
    post_update.disconnect(on_update)


def test_bulk_create_emits_one_save_per_object(received):
    with capture_events(publish=True) as events:
        created = m.BasicMaster.cqrs.bulk_create([m.BasicMaster(name=f'n{i}', counter=i) for i in range(3)])
    pks = [o.pk for o in created]
    assert all(pks)
    assert sorted(
        (e.signal_type, e.pk, e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events
    ) == [('SAVE', pks[i], f'n{i}', 0) for i in range(3)]
    assert received == [('create', m.BasicMaster, pks, 'default')]
    assert sorted(m.BasicReplica.objects.values_list('name', flat=True)) == ['n0', 'n1', 'n2']


def test_bulk_create_accepts_a_generator():
    with capture_events() as events:
        created = m.BasicMaster.cqrs.bulk_create(m.BasicMaster(name=f'g{i}') for i in range(4))
    assert len(created) == 4
    assert m.BasicMaster.objects.count() == 4
    assert len(events) == 4


def test_bulk_create_empty_list_emits_nothing(received):
    with capture_events() as events:
        assert m.BasicMaster.cqrs.bulk_create([]) == []
    assert events == []
    assert received == []


def test_bulk_create_tracked_previous_data():
    publisher = m.Publisher.objects.create(name='p')
    with capture_events() as events:
        m.TrackedMaster.cqrs.bulk_create(
            [m.TrackedMaster(char_field='a', publisher=publisher), m.TrackedMaster(char_field='b')]
        )
    by_char = {e.instance_data['char_field']: e.previous_data for e in events.of('tracked')}
    assert by_char == {
        'a': {'char_field': None, 'publisher_id': None, 'cqrs_revision': None},
        'b': {'char_field': None, 'cqrs_revision': None},
    }


def test_bulk_create_inside_transaction_publishes_at_commit():
    with capture_events() as events:
        with transaction.atomic():
            m.BasicMaster.cqrs.bulk_create([m.BasicMaster(name='x'), m.BasicMaster(name='y')])
            assert events == []
        assert len(events) == 2


def test_bulk_update_bumps_revisions_in_db_and_emits(received):
    objs = m.BasicMaster.cqrs.bulk_create([m.BasicMaster(name=f'n{i}') for i in range(3)])
    untouched = m.BasicMaster.objects.create(name='other')
    objs[0].save()  # revision 1 before the bulk update
    with capture_events(publish=True) as events:
        count = m.BasicMaster.cqrs.bulk_update(m.BasicMaster.objects.filter(name__startswith='n'), counter=9)
    assert count == 3
    expected = {objs[0].pk: 2, objs[1].pk: 1, objs[2].pk: 1}
    assert {o.pk: db_revision(m.BasicMaster, o.pk) for o in objs} == expected
    assert db_revision(m.BasicMaster, untouched.pk) == 0
    assert {
        e.pk: (e.signal_type, e.instance_data['counter'], e.instance_data['cqrs_revision']) for e in events
    } == {pk: ('SAVE', 9, rev) for pk, rev in expected.items()}
    assert [
        (kind, sender, sorted(pks), using) for kind, sender, pks, using in received if kind == 'update'
    ] == [('update', m.BasicMaster, sorted(expected), 'default')]
    replicas = {r.pk: (r.counter, r.cqrs_revision) for r in m.BasicReplica.objects.filter(pk__in=expected)}
    assert replicas == {pk: (9, rev) for pk, rev in expected.items()}


def test_bulk_update_refreshes_cqrs_updated():
    obj = m.BasicMaster.objects.create(name='a')
    before = m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated
    with capture_events() as events:
        m.BasicMaster.cqrs.bulk_update(m.BasicMaster.objects.all(), name='b')
    after = m.BasicMaster.objects.get(pk=obj.pk).cqrs_updated
    assert after > before
    assert events[0].instance_data['cqrs_updated'] == str(after)


def test_bulk_update_empty_queryset_returns_zero(received):
    m.TrackedMaster.objects.create(char_field='a')
    with capture_events() as events:
        assert m.TrackedMaster.cqrs.bulk_update(m.TrackedMaster.objects.none(), char_field='x') == 0
        assert m.BasicMaster.cqrs.bulk_update(m.BasicMaster.objects.filter(name='nope'), name='x') == 0
    assert events == []
    assert received == []


def test_bulk_update_tracked_previous_data_is_full_current_state():
    publisher = m.Publisher.objects.create(name='p')
    obj = m.TrackedMaster.objects.create(char_field='old', publisher=publisher)
    old_updated = str(m.TrackedMaster.objects.get(pk=obj.pk).cqrs_updated)
    with capture_events() as events:
        m.TrackedMaster.cqrs.bulk_update(m.TrackedMaster.objects.filter(pk=obj.pk), char_field='new')
    (event,) = events.of('tracked')
    # [quirk] bulk_update sends every tracked field, keyed by attname, as before the update.
    assert event.previous_data == {
        'id': obj.pk,
        'char_field': 'old',
        'publisher_id': publisher.pk,
        'cqrs_revision': 0,
        'cqrs_updated': old_updated,
    }
    assert event.instance_data['char_field'] == 'new'
    assert event.instance_data['cqrs_revision'] == 1


def test_bulk_update_inside_transaction_is_one_event_per_row_at_commit():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        m.BasicMaster.cqrs.bulk_update(m.BasicMaster.objects.all(), counter=1)
        m.BasicMaster.cqrs.bulk_update(m.BasicMaster.objects.all(), counter=2)
        assert events == []
    assert db_revision(m.BasicMaster, obj.pk) == 2
    # Each bulk update reloads its own objects: two events, in order, the last one is the final state.
    assert [(e.instance_data['counter'], e.instance_data['cqrs_revision']) for e in events] == [
        (1, 1),
        (2, 2),
    ]


def test_django_style_bulk_update_emits_nothing():
    obj = m.BasicMaster.objects.create(name='a')
    obj.name = 'b'
    with capture_events() as events:
        m.BasicMaster.cqrs.bulk_update([obj], ['name'])
    assert events == []
    row = m.BasicMaster.objects.get(pk=obj.pk)
    assert (row.name, row.cqrs_revision) == ('b', 0)


def test_plain_queryset_update_emits_nothing_but_queryset_delete_emits_per_row():
    a = m.BasicMaster.objects.create(name='a')
    b = m.BasicMaster.objects.create(name='b')
    with capture_events(publish=True) as events:
        m.BasicMaster.objects.update(counter=5)
        assert events == []
        m.BasicMaster.objects.all().delete()
    assert sorted((e.signal_type, e.pk) for e in events) == sorted([('DELETE', a.pk), ('DELETE', b.pk)])
    assert m.BasicReplica.objects.count() == 0


def test_call_post_bulk_create_and_post_update_by_hand(received):
    a = m.BasicMaster.objects.create(name='a')
    m.BasicMaster.objects.filter(pk=a.pk).update(name='raw sql')
    a.refresh_from_db()
    with capture_events() as events:
        m.BasicMaster.call_post_update([a], using='default')
        m.BasicMaster.call_post_bulk_create([a])
    assert [(e.signal_type, e.instance_data['name']) for e in events] == [
        ('SAVE', 'raw sql'),
        ('SAVE', 'raw sql'),
    ]
    assert received == [('update', m.BasicMaster, [a.pk], 'default'), ('create', m.BasicMaster, [a.pk], None)]
