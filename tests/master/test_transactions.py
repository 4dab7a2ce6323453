"""One event per object per transaction, published at commit (UPSTREAM_SPEC §4.3, §4.4)."""

from __future__ import annotations

import pytest
from django.db import transaction

from dj_cqrs.testing import capture_events
from tests.master._helpers import db_revision, db_tx
from tests.testapp import models as m

pytestmark = db_tx


class Boom(Exception):
    pass


def test_events_wait_for_the_outermost_commit():
    with capture_events(publish=True) as events:
        with transaction.atomic():
            obj = m.BasicMaster.objects.create(name='a')
            with transaction.atomic():
                obj.name = 'b'
                obj.save()
            assert events == []
            assert not m.BasicReplica.objects.filter(pk=obj.pk).exists()
        assert len(events) == 1
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'b'


def test_loaded_object_saved_twice_in_one_transaction_bumps_once():
    obj = m.BasicMaster.objects.create(name='a')
    obj = m.BasicMaster.objects.get(pk=obj.pk)
    with capture_events(publish=True) as events, transaction.atomic():
        obj.name = 'b'
        obj.save()
        obj.name = 'c'
        obj.counter = 7
        obj.save()
        obj.save()

    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert obj.cqrs_revision == 1
    assert len(events) == 1
    data = events[0].instance_data
    assert (data['name'], data['counter'], data['cqrs_revision']) == ('c', 7, 1)
    replica = m.BasicReplica.objects.get(pk=obj.pk)
    assert (replica.name, replica.counter, replica.cqrs_revision) == ('c', 7, 1)


def test_no_lost_packages_warning_after_double_save(cqrs_logs):
    obj = m.BasicMaster.objects.create(name='a')
    with transaction.atomic():
        obj.save()
        obj.save()
    obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 2
    assert m.BasicReplica.objects.get(pk=obj.pk).cqrs_revision == 2
    assert not [r for r in cqrs_logs.records if 'Lost or filtered out' in r.getMessage()]


def test_create_then_save_in_one_transaction_stays_at_revision_zero():
    with capture_events() as events, transaction.atomic():
        obj = m.BasicMaster.objects.create(name='a')
        obj.name = 'final'
        obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 0
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('final', 0)]


def test_one_event_per_object_with_final_state_many_objects():
    a = m.BasicMaster.objects.create(name='a')
    b = m.BasicMaster.objects.create(name='b')
    with capture_events() as events, transaction.atomic():
        for i in range(3):
            a.counter = i
            a.save()
            b.counter = 10 + i
            b.save()
    assert sorted(
        (e.pk, e.instance_data['counter'], e.instance_data['cqrs_revision']) for e in events
    ) == sorted([(a.pk, 2, 1), (b.pk, 12, 1)])


def test_two_python_objects_of_one_row_each_emit():
    obj = m.BasicMaster.objects.create(name='a')
    first = m.BasicMaster.objects.get(pk=obj.pk)
    second = m.BasicMaster.objects.get(pk=obj.pk)
    with capture_events() as events, transaction.atomic():
        first.save()
        second.save()
    assert db_revision(m.BasicMaster, obj.pk) == 2
    # One event per Python object; serialized at commit, the last one carries the committed state.
    assert len(events) == 2
    assert [e.pk for e in events] == [obj.pk, obj.pk]
    assert events[-1].instance_data['cqrs_revision'] == 2
    assert all(e.instance_data['cqrs_revision'] in (1, 2) for e in events)


def test_rollback_emits_nothing():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events(publish=True) as events, pytest.raises(Boom), transaction.atomic():
        obj.name = 'b'
        obj.save()
        m.BasicMaster.objects.create(name='new')
        raise Boom
    assert events == []
    assert db_revision(m.BasicMaster, obj.pk) == 0
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'a'
    assert m.BasicReplica.objects.count() == 1


def test_save_again_after_rolled_back_transaction_emits():
    obj = m.BasicMaster.objects.create(name='a')
    with pytest.raises(Boom), transaction.atomic():
        obj.name = 'lost'
        obj.save()
        raise Boom

    # No reset_cqrs_saves_count() call needed.
    with capture_events(publish=True) as events, transaction.atomic():
        obj.name = 'kept'
        obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('kept', 1)]
    assert m.BasicReplica.objects.get(pk=obj.pk).cqrs_revision == 1


def test_save_again_after_rolled_back_savepoint_emits():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        with pytest.raises(Boom), transaction.atomic():
            obj.name = 'lost'
            obj.save()
            raise Boom
        obj.name = 'kept'
        obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('kept', 1)]


def test_save_in_committed_savepoint_then_again_in_outer_block_is_one_event():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        with transaction.atomic():
            obj.name = 'inner'
            obj.save()
        obj.name = 'outer'
        obj.save()
    assert db_revision(m.BasicMaster, obj.pk) == 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('outer', 1)]


def test_save_in_new_transaction_after_rollback_of_autocommit_create():
    with pytest.raises(Boom), transaction.atomic():
        obj = m.BasicMaster.objects.create(name='never')
        raise Boom
    # The object still thinks it is saved (pk set); a fresh row is saved with force_insert.
    obj.pk = None
    obj._state.adding = True
    with capture_events() as events:
        obj.save()
    assert [(e.signal_type, e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [
        ('SAVE', 'never', 0)
    ]


def test_delete_is_published_at_commit_and_not_on_rollback():
    obj = m.BasicMaster.objects.create(name='a')
    pk = obj.pk
    with capture_events(publish=True) as events:
        with pytest.raises(Boom), transaction.atomic():
            m.BasicMaster.objects.get(pk=pk).delete()
            raise Boom
        assert events == []
        with transaction.atomic():
            m.BasicMaster.objects.get(pk=pk).delete()
            assert events == []
        assert [e.signal_type for e in events] == ['DELETE']
    assert not m.BasicReplica.objects.filter(pk=pk).exists()


def test_sync_after_save_in_one_transaction_emits_save_then_sync():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic():
        obj.name = 'b'
        obj.save()
        assert obj.cqrs_sync() is True
    assert [(e.signal_type, e.instance_data['name']) for e in events] == [('SAVE', 'b'), ('SYNC', 'b')]


def test_no_produce_model_emits_nothing_but_bumps_revision():
    with capture_events() as events:
        obj = m.NoProduceMaster.objects.create(name='a')
        obj.save()
        obj.save()
        assert obj.cqrs_sync() is True
        m.NoProduceMaster.cqrs.bulk_create([m.NoProduceMaster(name='b')])
        assert m.NoProduceMaster.cqrs.bulk_update(m.NoProduceMaster.objects.all(), name='c') == 2
        obj.delete()
    assert events == []
    assert m.NoProduceMaster.objects.get().cqrs_revision == 1
    assert obj.cqrs_revision == 2


def test_is_sync_instance_filters_save_sync_and_delete_but_revision_bumps():
    with capture_events() as events:
        hidden = m.FilteredMaster.objects.create(name='hidden-1')
        hidden.save()
        assert hidden.cqrs_sync() is True  # upstream: True even when filtered out
        hidden_pk = hidden.pk
        hidden.delete()
        shown = m.FilteredMaster.objects.create(name='shown')
    assert [(e.signal_type, e.pk) for e in events] == [('SAVE', shown.pk)]
    assert hidden.cqrs_revision == 1
    assert hidden_pk is not None


def test_filtered_instance_becoming_visible_emits_with_gap():
    obj = m.FilteredMaster.objects.create(name='hidden')
    obj.save()
    with capture_events() as events:
        obj.name = 'visible'
        obj.save()
    assert [(e.signal_type, e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [
        ('SAVE', 'visible', 2)
    ]


def _kept_for_relay(pk):
    """Whether an undelivered event for BasicMaster ``pk`` waits in the outbox (if there is one)."""
    try:
        from dj_cqrs.master.outbox import OutboxEvent
    except ImportError:
        return False
    return OutboxEvent.objects.filter(cqrs_id='basic', instance_pk=str(pk)).exists()


def test_broken_publish_does_not_lose_other_events_of_the_transaction(monkeypatch, cqrs_logs):
    from dj_cqrs.controller import producer

    seen = []
    original = producer.produce

    def flaky(payload):
        seen.append(payload.pk)
        if len(seen) == 1:
            raise RuntimeError('broker exploded')
        return original(payload)

    monkeypatch.setattr(producer, 'produce', flaky)
    with transaction.atomic():
        a = m.BasicMaster.objects.create(name='a')
        b = m.BasicMaster.objects.create(name='b')
    assert seen[0] == a.pk
    assert any(
        r.getMessage() == f"CQRS couldn't be published: pk = {a.pk} (basic)." and r.exc_info
        for r in cqrs_logs.records
    )
    # b is published at once, or kept for the relay: never dropped (upstream drops it).
    assert (b.pk in seen and m.BasicReplica.objects.filter(pk=b.pk).exists()) or _kept_for_relay(b.pk)


def test_a_failing_patched_produce_does_not_silence_the_next_test():
    from unittest import mock

    with mock.patch('dj_cqrs.controller.producer.produce', side_effect=RuntimeError('down')):
        m.BasicMaster.objects.create(name='first test')
    with mock.patch('dj_cqrs.controller.producer.produce') as produce:
        obj = m.BasicMaster.objects.create(name='next test')
    assert produce.call_count == 1
    assert produce.call_args.args[0].pk == obj.pk


def test_event_carries_the_saved_state_not_later_unsaved_changes():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events(publish=True) as events, transaction.atomic():
        obj.name = 'saved'
        obj.save()
        obj.name = 'never saved'
    assert m.BasicMaster.objects.get(pk=obj.pk).name == 'saved'
    assert events[0].instance_data['name'] == 'saved'
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'saved'


def _other_sessions_on_test_db():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()'
        )
        return cursor.fetchone()[0]


def test_publishing_leaves_no_background_database_session():
    import time

    assert _other_sessions_on_test_db() == 0
    m.BasicMaster.objects.create(name='a')
    time.sleep(1.5)  # longer than any background flush interval
    assert _other_sessions_on_test_db() == 0
