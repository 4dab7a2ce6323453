"""``cqrs_reconcile``: both diffs and their fixes in one pipeline (ours, no upstream equivalent)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core.management import CommandError

from dj_cqrs.testing import capture_events
from tests.commands._tools import call, manage
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

OLD = '2024-01-01T00:00:00Z'


@pytest.fixture
def drift():
    """Five master rows; on the replica one differs, one is missing and two are extra."""
    rows = _Rows(m.BasicMaster.objects.create(name=f'n{i}') for i in range(5))
    m.BasicReplica.objects.filter(pk=rows[1].pk).update(name='corrupted', cqrs_revision=-1)
    m.BasicReplica.objects.filter(pk=rows[3].pk).delete()
    ghosts = [rows[-1].pk + 100, rows[-1].pk + 101]  # after every master row: the last batch
    for pk in ghosts:
        m.BasicReplica.objects.create(id=pk, name='ghost', counter=0, cqrs_revision=0, cqrs_updated=OLD)
    rows.ghosts = ghosts
    return rows


class _Rows(list):
    ghosts: list[int]


def _state():
    return dict(m.BasicReplica.objects.values_list('pk', 'name'))


def test_in_process_finds_and_fixes_everything(drift):
    with capture_events(publish=True) as events:
        result = call('cqrs_reconcile', '--cqrs-id', 'basic')
    assert result.out.splitlines() == [
        'Reconcile of basic with replica: 6 replica row(s), 5 master row(s).',
        f'Differ: 1 [{drift[1].pk}]',
        f'Missing on the replica: 1 [{drift[3].pk}]',
        f'Deleted on the master: 2 [{drift.ghosts[0]}, {drift.ghosts[1]}]',
        'Done!',
        '2 instance(s) synced.',
        '2 delete(s) sent.',
    ]
    assert sorted((e.signal_type, e.pk, e.queue) for e in events) == [
        ('DELETE', drift.ghosts[0], None),
        ('DELETE', drift.ghosts[1], None),
        ('SYNC', drift[1].pk, 'replica'),
        ('SYNC', drift[3].pk, 'replica'),
    ]
    assert _state() == {r.pk: r.name for r in drift}
    again = call('cqrs_reconcile', '-cid', 'basic')
    assert 'Differ: 0\nMissing on the replica: 0\nDeleted on the master: 0\n' in again.out


def test_dry_run_only_reports(drift):
    before = _state()
    with capture_events() as events:
        result = call('cqrs_reconcile', '-cid', 'basic', '--dry-run')
    assert events == []
    assert _state() == before
    assert result.out.splitlines()[-1] == 'Dry run: nothing was sent.'
    assert f'Deleted on the master: 2 [{drift.ghosts[0]}, {drift.ghosts[1]}]' in result.out


def test_two_sides_through_a_stream(drift):
    replica = call('cqrs_reconcile', 'replica', '--cqrs-id', 'basic', '-b', '3')
    lines = replica.out.splitlines()
    assert re.fullmatch(r'basic,\d{4}-\d\d-\d\d [\d:.]+\+00:00,replica', lines[0])
    pks = sorted(_state())
    assert [len(eval(line)) for line in lines[1:]] == [3, 3]
    assert eval(lines[1])[0] == [pks[0], 0]
    result = call('cqrs_reconcile', 'master-side', stdin=replica.out)
    assert 'Done!\n2 instance(s) synced.\n2 delete(s) sent.\n' in result.out
    assert _state() == {r.pk: r.name for r in drift}


def test_dry_run_asked_on_the_replica_side_is_honoured_by_the_master(drift):
    replica = call('cqrs_reconcile', 'replica', '-cid', 'basic', '--dry-run')
    assert replica.out.splitlines()[0].split(',')[2] == 'dry-run'
    with capture_events() as events:
        result = call('cqrs_reconcile', 'master', stdin=replica.out)
    assert events == []
    assert 'Dry run: nothing was sent.' in result.out


def test_a_cut_stream_never_deletes_rows_the_master_has(drift):
    replica = call('cqrs_reconcile', 'replica', '-cid', 'basic', '-b', '2').out
    cut = '\n'.join(replica.splitlines()[:2])  # the header and the first batch only
    with capture_events(publish=True) as events:
        result = call('cqrs_reconcile', 'master', stdin=cut)
    assert not [e for e in events if e.signal_type == 'DELETE']
    assert 'Missing on the replica: 3 ' in result.out  # extra syncs are harmless
    assert _state()[drift[1].pk] == 'n1'


def test_bad_line_is_reported_and_the_rest_used(drift):
    replica = call('cqrs_reconcile', 'replica', '-cid', 'basic', '-b', '3').out.splitlines()
    stream = '\n'.join([replica[0], '[[1, "x"]', replica[1], replica[2]])
    result = manage('cqrs_reconcile', 'master', stdin=stream)
    assert result.code == 1
    assert "Input can't be parsed: line 2! not JSON" in result.err
    assert 'CommandError: 1 of 3 input line(s) could not be used (first: line 2:' in result.err
    assert _state() == {r.pk: r.name for r in drift}


def test_uuid_pks():
    keep = m.TypedMaster.objects.create(char='k')
    m.TypedReplica.objects.filter(pk=keep.pk).update(char='corrupted', cqrs_revision=-1)
    ghost = uuid.uuid4()
    m.TypedReplica.objects.create(
        id=ghost, char='', integer=0, amount=0, flag=False, cqrs_revision=0, cqrs_updated=OLD
    )
    result = call('cqrs_reconcile', '-cid', 'typed')
    assert f"Differ: 1 ['{keep.pk}']" in result.out
    assert f"Deleted on the master: 1 ['{ghost}']" in result.out
    assert list(m.TypedReplica.objects.values_list('pk', 'char')) == [(keep.pk, 'k')]


def test_rows_is_sync_instance_rejects_are_deleted_on_the_replica():
    shown = m.FilteredMaster.objects.create(name='shown')
    hidden = m.FilteredMaster.objects.create(name='was shown')
    m.FilteredMaster.objects.filter(pk=hidden.pk).update(name='hidden now')
    result = call('cqrs_reconcile', '-cid', 'filtered')
    assert f'Deleted on the master: 1 [{hidden.pk}]' in result.out
    assert list(m.FilteredReplica.objects.values_list('pk', flat=True)) == [shown.pk]


def test_long_lists_are_shortened_unless_verbose():
    rows = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(25)]
    m.BasicReplica.objects.all().delete()
    short = call('cqrs_reconcile', '-cid', 'basic', '--dry-run')
    assert '... (5 more, -v 2 lists all)]' in short.out
    full = call('cqrs_reconcile', '-cid', 'basic', '--dry-run', verbosity=2)
    assert f', {rows[-1].pk}]' in full.out


def test_master_side_needs_a_stream():
    with pytest.raises(CommandError, match=r"^No input: the master side reads the replica side's stream"):
        call('cqrs_reconcile', 'master', stdin='')
    with pytest.raises(CommandError, match=r'not the header of a reconcile stream'):
        call('cqrs_reconcile', 'master', stdin='basic,2024-05-01 10:00:00+00:00\n[1]\n')
    with pytest.raises(CommandError, match=r'^The input is the replica stream of basic, not of typed\.'):
        call('cqrs_reconcile', 'master', '-cid', 'typed', stdin='basic,t,replica\n')


def test_sides_and_ids():
    with pytest.raises(CommandError, match=r'^Wrong CQRS ID: nope! It is neither a master nor a replica'):
        call('cqrs_reconcile', '-cid', 'nope')
    with pytest.raises(CommandError, match=r'^The replica side needs --cqrs-id'):
        call('cqrs_reconcile', 'replica')
    with pytest.raises(CommandError, match=r'^Replica raw_master \(CacheReplica\) keeps no rows in a table'):
        call('cqrs_reconcile', 'replica', '-cid', 'raw_master')


def test_help_documents_the_two_sides():
    result = manage('cqrs_reconcile', '--help')
    assert result.code == 0
    assert (
        'replica$ manage.py cqrs_reconcile replica --cqrs-id X | master$ manage.py cqrs_reconcile master'
        in result.out
    )
