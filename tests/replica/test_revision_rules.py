"""Revision rules of ``update_instance`` (UPSTREAM_SPEC §6.4) with their exact log lines."""

from __future__ import annotations

import pytest

from tests.replica._helpers import apply, basic, db, messages
from tests.testapp import models as m

pytestmark = db


def _stored(rev, minutes=0):
    return m.BasicReplica.objects.create(**basic(rev=rev, minutes=minutes))


def _row():
    row = m.BasicReplica.objects.get(pk=1)
    return row.name, row.cqrs_revision


def test_create_applies_any_revision_without_check(caplog):
    assert apply('SAVE', 'basic', basic(rev=17, minutes=5))
    assert _row() == ('r17', 17)
    assert messages(caplog, 'WARNING') == [] and messages(caplog, 'ERROR') == []


def test_create_by_sync_applies():
    assert apply('SYNC', 'basic', basic(rev=3))
    assert _row() == ('r3', 3)


def test_next_revision_is_applied_silently(caplog):
    _stored(3)
    result = apply('SAVE', 'basic', basic(rev=4, minutes=1))
    assert isinstance(result, m.BasicReplica) and result.cqrs_revision == 4
    assert _row() == ('r4', 4)
    assert messages(caplog, 'WARNING') == [] and messages(caplog, 'ERROR') == []


def test_revision_gap_is_applied_with_lost_packages_warning(caplog):
    _stored(3)
    assert apply('SAVE', 'basic', basic(rev=6, minutes=1))
    assert _row() == ('r6', 6)
    assert messages(caplog, 'WARNING') == [
        'Lost or filtered out 2 CQRS packages: pk = 1, cqrs_revision = 6 (basic)'
    ]


def test_older_revision_is_skipped_with_wrong_order_error(caplog):
    _stored(3)
    result = apply('SAVE', 'basic', basic(rev=1, minutes=1))
    assert result  # acknowledged: the existing instance is returned
    assert isinstance(result, m.BasicReplica) and result.cqrs_revision == 3
    assert _row() == ('r3', 3)
    assert messages(caplog, 'ERROR') == [
        'Wrong CQRS sync order: pk = 1, cqrs_revision = new 1 / existing 3 (basic).'
    ]


def test_duplicate_revision_is_skipped_with_error(caplog):
    _stored(3)
    assert apply('SAVE', 'basic', basic(rev=3, minutes=1, name='dup'))
    assert _row() == ('r3', 3)
    assert messages(caplog, 'ERROR') == ['Received duplicate CQRS data: pk = 1, cqrs_revision = 3 (basic).']
    assert messages(caplog, 'WARNING') == []


def test_duplicate_revision_zero_warns_about_creation_race(caplog):
    _stored(0)
    assert apply('SAVE', 'basic', basic(rev=0, name='dup'))
    assert _row() == ('r0', 0)
    assert messages(caplog, 'ERROR') == ['Received duplicate CQRS data: pk = 1, cqrs_revision = 0 (basic).']
    assert messages(caplog, 'WARNING') == ['CQRS potential creation race condition: pk = 1 (basic).']


def test_sync_with_newer_or_equal_revision_is_applied_silently(caplog):
    _stored(3)
    assert apply('SYNC', 'basic', basic(rev=3, name='resynced'))
    assert _row() == ('resynced', 3)
    assert apply('SYNC', 'basic', basic(rev=5, minutes=1))
    assert _row() == ('r5', 5)
    assert messages(caplog, 'WARNING') == [] and messages(caplog, 'ERROR') == []


def test_sync_downgrade_when_master_row_is_newer_in_time(caplog):
    """A master row re-created (revision restarted) after the stored one: the SYNC wins."""
    _stored(5, minutes=0)
    assert apply('SYNC', 'basic', basic(rev=1, minutes=10))
    assert _row() == ('r1', 1)
    assert messages(caplog, 'WARNING') == [
        'CQRS revision downgrade on sync: pk = 1, cqrs_revision = new 1 / existing 5 (basic).'
    ]


def test_stale_sync_is_skipped(caplog):
    """Lower revision and not later in time: a SYNC that would roll the row back is skipped."""
    _stored(5, minutes=10)
    result = apply('SYNC', 'basic', basic(rev=4, minutes=5))
    assert result  # acknowledged
    assert _row() == ('r5', 5)
    assert messages(caplog, 'WARNING') == [
        'Stale CQRS sync skipped: pk = 1, cqrs_revision = new 4 / existing 5 (basic).'
    ]


def test_stale_sync_with_equal_timestamp_is_skipped():
    _stored(5, minutes=10)
    assert apply('SYNC', 'basic', basic(rev=4, minutes=10))
    assert _row() == ('r5', 5)


def test_sync_passes_sync_true_to_update_hook():
    m.TrackedReplica.objects.create(
        id=1, text='t', publisher_id_value=None, cqrs_revision=2, cqrs_updated='2024-05-01 10:00:00+00:00'
    )
    data = {
        'id': 1,
        'char_field': 's',
        'publisher': None,
        'cqrs_revision': 2,
        'cqrs_updated': '2024-05-01 10:00:00+00:00',
    }
    assert apply('SYNC', 'tracked', data)
    assert apply('SAVE', 'tracked', {**data, 'cqrs_revision': 3})
    assert list(m.HookLog.objects.order_by('pk').values_list('action', 'sync')) == [
        ('update', True),
        ('update', False),
    ]


def test_update_writes_master_sync_fields():
    _stored(1, minutes=0)
    assert apply('SAVE', 'basic', basic(rev=2, minutes=7, counter=42))
    row = m.BasicReplica.objects.get(pk=1)
    assert (row.counter, row.cqrs_revision, str(row.cqrs_updated)) == (42, 2, '2024-05-01 10:07:00+00:00')


@pytest.mark.parametrize(
    ('sequence', 'final'),
    [
        ([0, 1, 2, 3], 3),
        ([0, 2, 1, 3], 3),
        ([0, 3, 2, 1], 3),
        ([2, 0, 1], 2),
    ],
)
def test_out_of_order_saves_never_go_back(sequence, final):
    for rev in sequence:
        assert apply('SAVE', 'basic', basic(rev=rev, minutes=rev))
    assert _row() == (f'r{final}', final)


def test_non_integer_revision_is_a_failure(caplog):
    _stored(1)
    assert not apply('SAVE', 'basic', basic(rev=1, cqrs_revision='abc'))
    assert _row() == ('r1', 1)
    assert "Bad CQRS revision: pk = 1, cqrs_revision = 'abc' (basic)." in messages(caplog, 'ERROR')
