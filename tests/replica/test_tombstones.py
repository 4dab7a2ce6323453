"""Delete tombstones: late saves never resurrect deleted rows (UPSTREAM_SPEC §11 #10, fixed)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from dj_cqrs.models import ReplicaTombstone
from dj_cqrs.replica import tombstones
from dj_cqrs.testing import capture_events
from tests.replica._helpers import T0, apply, basic, db, db_tx, messages, ts
from tests.testapp import models as m

pytestmark = db


def _delete(pk=1, rev=1, minutes=0):
    return {'id': pk, 'cqrs_revision': rev, 'cqrs_updated': ts(minutes)}


def test_delete_removes_row_and_records_tombstone():
    apply('SAVE', 'basic', basic(rev=2, minutes=2))
    assert apply('DELETE', 'basic', _delete(rev=3, minutes=3)) is True
    assert not m.BasicReplica.objects.exists()
    stone = ReplicaTombstone.objects.get()
    assert (stone.cqrs_id, stone.pk_value, stone.cqrs_revision) == ('basic', '1', 3)
    assert stone.cqrs_updated == T0 + dt.timedelta(minutes=3)


def test_save_older_than_delete_does_not_resurrect(caplog):
    apply('SAVE', 'basic', basic(rev=2, minutes=2))
    apply('DELETE', 'basic', _delete(rev=3, minutes=3))
    caplog.clear()
    result = apply('SAVE', 'basic', basic(rev=2, minutes=2))  # a retried / delayed SAVE
    assert result  # acknowledged, not retried
    assert not m.BasicReplica.objects.exists()
    assert messages(caplog, 'WARNING') == [
        'CQRS event for a deleted row skipped: pk = 1, cqrs_revision = 2 / deleted at 3 (basic).'
    ]


def test_sync_older_than_delete_does_not_resurrect():
    apply('SAVE', 'basic', basic(rev=0, minutes=0))
    apply('DELETE', 'basic', _delete(rev=1, minutes=1))
    assert apply('SYNC', 'basic', basic(rev=0, minutes=0))
    assert not m.BasicReplica.objects.exists()


def test_save_arriving_before_any_row_but_after_delete_is_skipped():
    """Out of order from the start: the DELETE arrives first, then the (older) create."""
    assert apply('DELETE', 'basic', _delete(rev=1, minutes=1)) is True
    assert apply('SAVE', 'basic', basic(rev=0, minutes=0))
    assert not m.BasicReplica.objects.exists()


def test_row_recreated_later_is_applied_and_tombstone_cleared():
    apply('SAVE', 'basic', basic(rev=4, minutes=4))
    apply('DELETE', 'basic', _delete(rev=5, minutes=5))
    # The master re-creates the pk: revision restarts at 0 but cqrs_updated is later.
    assert apply('SAVE', 'basic', basic(rev=0, minutes=6))
    row = m.BasicReplica.objects.get(pk=1)
    assert (row.name, row.cqrs_revision) == ('r0', 0)
    assert not ReplicaTombstone.objects.exists()


def test_stale_delete_is_skipped_when_row_is_newer_in_time(caplog):
    apply('SAVE', 'basic', basic(rev=0, minutes=10))  # re-created row, newer than the delete
    result = apply('DELETE', 'basic', _delete(rev=5, minutes=5))
    assert result is True
    assert m.BasicReplica.objects.get(pk=1).name == 'r0'
    assert messages(caplog, 'WARNING') == ['Stale CQRS delete skipped: pk = 1, the row is newer (basic).']


def test_delete_with_equal_timestamp_deletes():
    apply('SAVE', 'basic', basic(rev=0, minutes=5))
    assert apply('DELETE', 'basic', _delete(rev=1, minutes=5)) is True
    assert not m.BasicReplica.objects.exists()


def test_delete_of_absent_row_records_tombstone():
    assert apply('DELETE', 'basic', _delete(pk=77, rev=3, minutes=3)) is True
    assert ReplicaTombstone.objects.filter(cqrs_id='basic', pk_value='77', cqrs_revision=3).exists()


def test_second_delete_updates_tombstone():
    apply('DELETE', 'basic', _delete(rev=1, minutes=1))
    apply('DELETE', 'basic', _delete(rev=4, minutes=4))
    stone = ReplicaTombstone.objects.get()
    assert stone.cqrs_revision == 4
    assert stone.cqrs_updated == T0 + dt.timedelta(minutes=4)


def test_tombstones_are_per_cqrs_id():
    apply('DELETE', 'basic', _delete(pk=1, rev=1, minutes=1))
    data = {'id': 1, 'name': 'f', 'cqrs_revision': 0, 'cqrs_updated': ts(0)}
    assert apply('SAVE', 'filtered', data)
    assert m.FilteredReplica.objects.filter(pk=1).exists()


def test_is_newer_decides_by_time_then_revision():
    assert tombstones.is_newer(0, ts(2), 5, ts(1)) is True
    assert tombstones.is_newer(9, ts(1), 5, ts(2)) is False
    assert tombstones.is_newer(9, ts(1), 5, ts(1)) is False
    assert tombstones.is_newer(6, None, 5, ts(1)) is True
    assert tombstones.is_newer(5, 'garbage', 5, ts(1)) is False
    assert tombstones.as_datetime('2024-05-01 10:00:00+00:00') == T0
    assert tombstones.as_datetime('2024-05-01T10:00:00') == T0  # naive: default time zone (UTC)
    assert tombstones.as_datetime('nope') is None


def test_prune_and_forget():
    apply('DELETE', 'basic', _delete(pk=1))
    apply('DELETE', 'basic', _delete(pk=2))
    tombstones.forget(m.BasicReplica, 1, 'default')
    assert list(ReplicaTombstone.objects.values_list('pk_value', flat=True)) == ['2']
    assert tombstones.prune(dt.timedelta(days=1)) == 0
    ReplicaTombstone.objects.update(deleted_at=T0)
    assert tombstones.prune(dt.timedelta(days=1)) == 1
    assert not ReplicaTombstone.objects.exists()


@db_tx
def test_end_to_end_replayed_save_after_master_delete_is_ignored():
    obj = m.BasicMaster.objects.create(name='a')
    with capture_events(publish=True) as events:
        obj.name = 'b'
        obj.save()
    (save_event,) = events
    pk = obj.pk
    obj.delete()
    assert not m.BasicReplica.objects.filter(pk=pk).exists()

    # The broker redelivers the old SAVE (a retry that outlived the delete).
    apply('SAVE', 'basic', save_event.instance_data)
    assert not m.BasicReplica.objects.filter(pk=pk).exists()

    # A new row with the same pk (created later on the master) is applied.
    with transaction.atomic():
        m.BasicMaster.objects.create(pk=pk, name='reborn')
    assert m.BasicReplica.objects.get(pk=pk).name == 'reborn'


@pytest.mark.parametrize('signal', ['SAVE', 'SYNC'])
def test_tombstone_check_applies_to_mapped_and_custom_models(signal):
    data = {'id': 3, 'name': 'A', 'publisher': None, 'books': [], 'cqrs_revision': 0, 'cqrs_updated': ts(0)}
    apply('SAVE', 'author', data)
    apply('DELETE', 'author', _delete(pk=3, rev=1, minutes=1))
    assert apply(signal, 'author', data)
    assert not m.AuthorReplica.objects.filter(pk=3).exists()


def test_late_older_delete_does_not_regress_the_tombstone():
    """Master: create T0, delete T3, re-create T4 (rev 0), delete T5 (rev 1).
    The replica receives DELETE@T5, then the late DELETE@T3 and the late SAVE@T4: the row stays deleted."""
    assert apply('DELETE', 'basic', _delete(rev=1, minutes=5)) is True
    assert apply('DELETE', 'basic', _delete(rev=1, minutes=3)) is True
    stone = ReplicaTombstone.objects.get()
    assert stone.cqrs_updated == T0 + dt.timedelta(minutes=5)
    assert apply('SAVE', 'basic', basic(rev=0, minutes=4))
    assert not m.BasicReplica.objects.exists()
