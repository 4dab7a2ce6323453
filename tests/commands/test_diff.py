"""The revision diff (``cqrs_diff_master | cqrs_diff_replica | cqrs_diff_sync``) and the deleted
rows diff (``cqrs_deleted_diff_replica | cqrs_deleted_diff_master | cqrs_deleted_sync_replica``),
UPSTREAM_SPEC §8.5–8.10, stage by stage through ``call_command``."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from dj_cqrs.models import ReplicaTombstone
from dj_cqrs.testing import capture_events
from tests.commands._tools import call
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = r'(?P<id>\w+),\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00'


def _basic(n):
    return [m.BasicMaster.objects.create(name=f'n{i}') for i in range(n)]


def _revision_pipeline(cqrs_id, *master_args):
    master = call('cqrs_diff_master', '-cid', cqrs_id, *master_args)
    replica = call('cqrs_diff_replica', stdin=master.out)
    synced = call('cqrs_diff_sync', stdin=replica.out)
    return master, replica, synced


def _deleted_pipeline(cqrs_id, *replica_args):
    replica = call('cqrs_deleted_diff_replica', '-cid', cqrs_id, *replica_args)
    master = call('cqrs_deleted_diff_master', stdin=replica.out)
    deleted = call('cqrs_deleted_sync_replica', stdin=master.out)
    return replica, master, deleted


# -- cqrs_diff_master ----------------------------------------------------------------------------------
def test_diff_master_stream_format():
    rows = _basic(5)
    result = call('cqrs_diff_master', '--cqrs-id', 'basic', '--batch', '2')
    lines = result.out.splitlines()
    assert re.fullmatch(HEADER, lines[0]).group('id') == 'basic'
    pks = [r.pk for r in rows]
    assert lines[1:] == [f'[[{pks[0]},0],[{pks[1]},0]]', f'[[{pks[2]},0],[{pks[3]},0]]', f'[[{pks[4]},0]]']
    assert result.err == ''


def test_diff_master_filter_and_empty_result():
    rows = _basic(3)
    result = call('cqrs_diff_master', '-cid', 'basic', '-f', f'{{"id__gte": {rows[1].pk}}}')
    assert result.out.splitlines()[1] == f'[[{rows[1].pk},0],[{rows[2].pk},0]]'
    empty = call('cqrs_diff_master', '-cid', 'basic', '-f', '{"name": "none"}')
    assert (empty.out, empty.err) == ('', 'No objects found for filter!\n')


def test_diff_master_reads_only_keys_and_revisions():
    _basic(4)
    with CaptureQueriesContext(connection) as queries:
        call('cqrs_diff_master', '-cid', 'basic', '-b', '2')
    selects = [q['sql'] for q in queries if 'testapp_basicmaster' in q['sql']]
    assert all('"name"' not in s for s in selects[1:]), selects
    assert not [s for s in selects if 'OFFSET' in s]


def test_diff_master_leaves_out_rows_is_sync_instance_rejects():
    shown = m.FilteredMaster.objects.create(name='shown')
    m.FilteredMaster.objects.create(name='hidden')
    result = call('cqrs_diff_master', '-cid', 'filtered')
    assert result.out.splitlines()[1:] == [f'[[{shown.pk},0]]']


def test_diff_master_uuid_pks_are_strings():
    obj = m.TypedMaster.objects.create(id=uuid.UUID('12345678-1234-5678-1234-567812345678'))
    result = call('cqrs_diff_master', '-cid', 'typed')
    assert result.out.splitlines()[1] == f'[["{obj.pk}",0]]'


# -- cqrs_diff_replica -----------------------------------------------------------------------------------
def test_diff_replica_lists_differing_and_missing_rows():
    rows = _basic(4)
    m.BasicReplica.objects.filter(pk=rows[1].pk).update(cqrs_revision=5)
    m.BasicReplica.objects.filter(pk=rows[3].pk).delete()
    master = call('cqrs_diff_master', '-cid', 'basic', '-b', '2').out
    result = call('cqrs_diff_replica', stdin=master)
    lines = result.out.splitlines()
    assert lines[0] == master.splitlines()[0] + ',replica'
    assert lines[1:] == [f'[{rows[1].pk}]', f'[{rows[3].pk}]']
    assert result.err == f'PK to resync: {{{rows[1].pk}}}\nPK to resync: {{{rows[3].pk}}}\n'


def test_diff_replica_queue_none_when_not_configured():
    _basic(1)
    master = call('cqrs_diff_master', '-cid', 'basic').out
    with override_settings(CQRS={'transport': 'dj_cqrs.testing.LoopbackTransport'}):
        result = call('cqrs_diff_replica', stdin=master)
    assert result.out.splitlines()[0].endswith(',None')


def test_diff_replica_empty_input_is_nothing_to_do():
    result = call('cqrs_diff_replica', stdin='')
    assert (result.out, result.err) == ('', 'No input: nothing to diff.\n')


# -- cqrs_diff_sync ----------------------------------------------------------------------------------------
def test_revision_pipeline_repairs_the_replica():
    rows = _basic(5)
    m.BasicReplica.objects.filter(pk=rows[0].pk).update(name='corrupted', cqrs_revision=-1)
    m.BasicReplica.objects.filter(pk=rows[4].pk).delete()
    with capture_events(publish=True) as events:
        _, _, synced = _revision_pipeline('basic', '-b', '2')
    assert [(e.signal_type, e.pk, e.queue) for e in events] == [
        ('SYNC', rows[0].pk, 'replica'),
        ('SYNC', rows[4].pk, 'replica'),
    ]
    assert synced.out == ('Done!\n1 instance(s) synced.\n1 instance(s) processed.\n' * 2)
    assert dict(m.BasicReplica.objects.values_list('pk', 'name')) == {r.pk: r.name for r in rows}
    assert call('cqrs_diff_replica', stdin=call('cqrs_diff_master', '-cid', 'basic').out).out.count('\n') == 1


def test_diff_sync_without_queue_broadcasts():
    rows = _basic(2)
    stream = f'basic,2024-05-01 10:00:00+00:00,None\n[{rows[0].pk},{rows[1].pk}]\n'
    with capture_events() as events:
        result = call('cqrs_diff_sync', stdin=stream)
    assert result.out == 'Done!\n2 instance(s) synced.\n2 instance(s) processed.\n'
    assert [(e.pk, e.queue) for e in events] == [(rows[0].pk, None), (rows[1].pk, None)]


def test_diff_sync_with_progress():
    rows = _basic(1)
    result = call('cqrs_diff_sync', '-p', '-b', '5', stdin=f'basic,t,None\n[{rows[0].pk}]\n')
    assert result.out.splitlines()[0] == 'Processing 1 records with batch size 5'


def test_revision_pipeline_with_a_string_pk_not_named_id():
    m.CodeMaster.objects.create(code='a/1', name='x')
    m.CodeMaster.objects.create(code='b,2', name='y')
    m.CodeReplica.objects.filter(code='b,2').update(name='corrupted', cqrs_revision=-1)
    master, replica, synced = _revision_pipeline('code')
    assert master.out.splitlines()[1] == '[["a\\/1",0],["b,2",0]]'
    assert replica.out.splitlines()[1] == '["b,2"]'
    assert synced.out.endswith('1 instance(s) synced.\n1 instance(s) processed.\n')
    assert m.CodeReplica.objects.get(code='b,2').name == 'y'


def test_revision_pipeline_with_uuid_pks():
    objs = [m.TypedMaster.objects.create(char=f'c{i}') for i in range(3)]
    m.TypedReplica.objects.filter(pk=objs[1].pk).update(char='corrupted', cqrs_revision=-1)
    _, replica, _ = _revision_pipeline('typed')
    assert replica.out.splitlines()[1] == f'["{objs[1].pk}"]'
    assert m.TypedReplica.objects.get(pk=objs[1].pk).char == 'c1'


def test_revision_pipeline_with_direct_syncs_only_replica():
    obj = m.FilteredMaster.objects.create(name='shown')
    m.FilteredReplica.objects.filter(pk=obj.pk).update(name='corrupted', cqrs_revision=-1)
    _revision_pipeline('filtered')
    assert m.FilteredReplica.objects.get(pk=obj.pk).name == 'shown'  # a direct sync reaches it


# -- the deleted rows diff ------------------------------------------------------------------------------
def test_deleted_pipeline_stream_formats_and_result():
    rows = _basic(4)
    ghosts = [
        m.BasicReplica.objects.create(
            id=10**9 + i, name='ghost', counter=0, cqrs_revision=2, cqrs_updated='2024-01-01T00:00:00Z'
        )
        for i in range(2)
    ]
    replica, master, deleted = _deleted_pipeline('basic', '-b', '3')
    lines = replica.out.splitlines()
    assert re.fullmatch(HEADER, lines[0])
    pks = [r.pk for r in rows] + [g.pk for g in ghosts]
    assert lines[1:] == [f'[{pks[0]},{pks[1]},{pks[2]}]', f'[{pks[3]},{pks[4]},{pks[5]}]']
    assert master.out.splitlines() == [lines[0], f'[{ghosts[0].pk},{ghosts[1].pk}]']
    assert master.err == f'PK to delete: [{ghosts[0].pk}, {ghosts[1].pk}]\n'
    assert deleted.out == ''
    assert deleted.err == 'Done!\n2 instance(s) deleted.\n'
    assert sorted(m.BasicReplica.objects.values_list('pk', flat=True)) == [r.pk for r in rows]
    tombstones = ReplicaTombstone.objects.filter(cqrs_id='basic', pk_value__in=[str(g.pk) for g in ghosts])
    assert [t.cqrs_revision for t in tombstones] == [3, 3]


def test_deleted_rows_stay_deleted_when_a_stale_save_arrives():
    m.BasicReplica.objects.create(
        id=77, name='ghost', counter=0, cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    _deleted_pipeline('basic')
    from dj_cqrs.controller import consumer
    from dj_cqrs.payload import TransportPayload

    stale = TransportPayload(
        'SAVE',
        'basic',
        {
            'id': 77,
            'name': 'ghost',
            'counter': 0,
            'cqrs_revision': 0,
            'cqrs_updated': '2024-01-01 00:00:00+00:00',
        },
        77,
    )
    consumer.consume(stale)
    assert not m.BasicReplica.objects.filter(pk=77).exists()


def test_deleted_diff_master_treats_unpublished_rows_as_deleted():
    shown = m.FilteredMaster.objects.create(name='shown')
    hidden = m.FilteredMaster.objects.create(name='was shown')
    assert m.FilteredReplica.objects.filter(pk=hidden.pk).exists()
    m.FilteredMaster.objects.filter(pk=hidden.pk).update(name='hidden now')
    _, master, _ = _deleted_pipeline('filtered')
    assert master.out.splitlines()[1:] == [f'[{hidden.pk}]']
    assert list(m.FilteredReplica.objects.values_list('pk', flat=True)) == [shown.pk]


def test_deleted_pipeline_with_uuid_and_string_pks():
    keep = m.TypedMaster.objects.create()
    ghost = uuid.uuid4()
    m.TypedReplica.objects.create(
        id=ghost,
        char='',
        integer=0,
        amount=0,
        flag=False,
        cqrs_revision=0,
        cqrs_updated='2024-01-01T00:00:00Z',
    )
    _, master, _ = _deleted_pipeline('typed')
    assert master.out.splitlines()[1] == f'["{ghost}"]'
    assert list(m.TypedReplica.objects.values_list('pk', flat=True)) == [keep.pk]

    m.CodeMaster.objects.create(code='kept/1', name='x')
    m.CodeReplica.objects.create(
        code='gone,2', name='y', cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    _deleted_pipeline('code')
    assert list(m.CodeReplica.objects.values_list('pk', flat=True)) == ['kept/1']


def test_deleted_diff_replica_filter_and_empty():
    _basic(2)
    result = call('cqrs_deleted_diff_replica', '-cid', 'basic', '-f', '{"name": "none"}')
    assert (result.out, result.err) == ('', 'No objects found for filter!\n')


def test_deleted_sync_replica_reports_database_errors_and_continues():
    m.BasicReplica.objects.create(
        id=5, name='a', counter=0, cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    from unittest import mock

    from django.db import DatabaseError

    real_delete = m.BasicReplica.objects.none().delete.__func__
    calls = []

    def failing_once(qs):
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseError('deadlock detected')
        return real_delete(qs)

    with mock.patch('django.db.models.query.QuerySet.delete', failing_once):
        from tests.commands._tools import manage

        result = manage('cqrs_deleted_sync_replica', stdin='basic,t\n[5]\n[5]\n')
    assert result.code == 1
    assert 'deadlock detected\n' in result.err
    assert 'Done!\n1 instance(s) deleted.\n' in result.err
    assert 'CommandError: 1 of 2 line(s) failed in the database' in result.err
    assert not m.BasicReplica.objects.filter(pk=5).exists()


@pytest.mark.django_db(transaction=True, databases=['default', 'replica_db'])
def test_models_on_another_database(tmp_path):
    rows = [m.OtherDbMaster.objects.create(name=f'n{i}') for i in range(3)]
    m.OtherDbReplica.objects.filter(pk=rows[0].pk).update(name='corrupted', cqrs_revision=-1)
    m.OtherDbReplica.objects.create(
        id=10**9, name='ghost', cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    _revision_pipeline('other_db')
    _deleted_pipeline('other_db')
    assert dict(m.OtherDbReplica.objects.values_list('pk', 'name')) == {r.pk: r.name for r in rows}

    path = tmp_path / 'other.dump'
    call('cqrs_bulk_dump', '-c', 'other_db', '-o', str(path))
    result = call('cqrs_bulk_load', '-i', str(path), '--clear')
    assert result.err == 'Done!\n3 instance(s) loaded.\n'
    assert m.OtherDbReplica.objects.count() == 3
