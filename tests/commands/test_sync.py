"""``cqrs_sync`` (UPSTREAM_SPEC §8.2): filtered re-publication, batches, progress, failures."""

from __future__ import annotations

import re
import uuid
from unittest import mock

import pytest
from django.core.management import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dj_cqrs.ops.progress import Progress, status_line
from dj_cqrs.testing import capture_events
from tests.commands._tools import call, manage
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)


def _basic(n):
    return [m.BasicMaster.objects.create(name=f'n{i}') for i in range(n)]


def test_sync_all_rows_repairs_the_replica():
    rows = _basic(3)
    m.BasicReplica.objects.filter(pk=rows[0].pk).update(name='corrupted')
    m.BasicReplica.objects.filter(pk=rows[1].pk).delete()
    result = call('cqrs_sync', '--cqrs-id', 'basic', '-f', '{}')
    assert result.out == 'Done!\n3 instance(s) synced.\n3 instance(s) processed.\n'
    assert dict(m.BasicReplica.objects.values_list('pk', 'name')) == {r.pk: r.name for r in rows}


def test_without_filter_nothing_is_synced():
    _basic(2)
    with capture_events() as events:
        result = call('cqrs_sync', '-cid', 'basic')
    assert result.out == 'No objects found for filter!\n'
    assert '-f={}' in result.err
    assert events == []


def test_filter_that_matches_nothing():
    _basic(1)
    result = call('cqrs_sync', '-cid', 'basic', '-f', '{"name": "nope"}')
    assert result.out == 'No objects found for filter!\n'


def test_filter_and_queue_send_direct_syncs():
    rows = _basic(3)
    with capture_events() as events:
        result = call(
            'cqrs_sync',
            '-cid',
            'basic',
            '--filter',
            f'{{"id__in": [{rows[0].pk}, {rows[2].pk}]}}',
            '-q',
            'other',
        )
    assert result.out.endswith('2 instance(s) synced.\n2 instance(s) processed.\n')
    assert [(e.signal_type, e.pk, e.queue) for e in events] == [
        ('SYNC', rows[0].pk, 'other'),
        ('SYNC', rows[2].pk, 'other'),
    ]


def test_batches_are_keyset_pages_and_rows_are_not_reloaded():
    _basic(5)
    with CaptureQueriesContext(connection) as queries, capture_events() as events:
        call('cqrs_sync', '-cid', 'basic', '-f', '{}', '-b', '2')
    assert len(events) == 5
    selects = [
        q['sql'] for q in queries if q['sql'].startswith('SELECT') and 'testapp_basicmaster' in q['sql']
    ]
    assert not [s for s in selects if 'OFFSET' in s]
    # count + exists-check + 3 pages of (keys, rows) + the empty tail query at most; none per row
    assert len(selects) <= 9, selects
    assert not [s for s in selects if re.search(r'WHERE "testapp_basicmaster"."id" = ', s)]


def test_rows_added_during_the_run_are_synced():
    rows = _basic(3)
    real_sync = m.BasicMaster.cqrs_sync
    added = []

    def sync_and_add(self, *args, **kwargs):
        if not added:
            added.append(m.BasicMaster.objects.create(name='late'))
        return real_sync(self, *args, **kwargs)

    with mock.patch.object(m.BasicMaster, 'cqrs_sync', sync_and_add), capture_events() as events:
        result = call('cqrs_sync', '-cid', 'basic', '-f', '{}', '-b', '2')
    synced = sorted(e.pk for e in events if e.signal_type == 'SYNC')
    assert synced == sorted([r.pk for r in rows] + [added[0].pk])
    assert result.out.endswith('4 instance(s) synced.\n4 instance(s) processed.\n')


def test_serializer_model_uses_its_relations_once_per_batch():
    publisher = m.Publisher.objects.create(name='p')
    for i in range(4):
        author = m.Author.objects.create(name=f'a{i}', publisher=publisher)
        m.Book.objects.create(title=f't{i}', author=author)
    with CaptureQueriesContext(connection) as queries, capture_events() as events:
        call('cqrs_sync', '-cid', 'author', '-f', '{}', '-b', '2')
    assert sorted(e.instance_data['books'][0] for e in events) == ['t0', 't1', 't2', 't3']
    book_queries = [q for q in queries if 'testapp_book' in q['sql']]
    assert len(book_queries) == 2  # one prefetch per batch


def test_string_pk_not_named_id():
    m.CodeMaster.objects.create(code='a/1', name='x')
    m.CodeMaster.objects.create(code='b', name='y')
    m.CodeReplica.objects.filter(code='a/1').update(name='corrupted')
    result = call('cqrs_sync', '-cid', 'code', '-f', '{"code__in": ["a/1"]}')
    assert result.out.endswith('1 instance(s) synced.\n1 instance(s) processed.\n')
    assert m.CodeReplica.objects.get(code='a/1').name == 'x'


def test_uuid_pk():
    obj = m.TypedMaster.objects.create(char='c')
    m.TypedReplica.objects.filter(pk=obj.pk).update(char='corrupted')
    call('cqrs_sync', '-cid', 'typed', '-f', f'{{"id": "{obj.pk}"}}')
    assert m.TypedReplica.objects.get(pk=obj.pk).char == 'c'


def test_record_failure_is_reported_and_the_others_synced():
    rows = _basic(3)
    real_sync = m.BasicMaster.cqrs_sync

    def flaky(self, *args, **kwargs):
        if self.pk == rows[1].pk:
            raise RuntimeError('boom')
        return real_sync(self, *args, **kwargs)

    with mock.patch.object(m.BasicMaster, 'cqrs_sync', flaky), capture_events() as events:
        result = manage('cqrs_sync', '-cid', 'basic', '-f', '{}')
    assert result.code == 1
    assert f'\nSync record failed for pk={rows[1].pk}: RuntimeError: boom\n' in result.out
    assert 'Done!\n2 instance(s) synced.\n3 instance(s) processed.\n' in result.out
    assert 'CommandError: 1 of 3 instance(s) failed to sync' in result.err
    assert sorted(e.pk for e in events) == [rows[0].pk, rows[2].pk]


def test_a_chunk_writes_its_outbox_rows_in_one_statement():
    _basic(5)
    with CaptureQueriesContext(connection) as queries, capture_events() as events:
        call('cqrs_sync', '-cid', 'basic', '-f', '{}')
    assert len(events) == 5
    inserts = [q['sql'] for q in queries if q['sql'].startswith('INSERT INTO "dj_cqrs_outbox"')]
    assert len(inserts) == 1, inserts


def test_a_database_error_fails_only_its_row_and_the_chunk_is_retried_row_by_row():
    rows = _basic(4)
    real_sync = m.BasicMaster.cqrs_sync
    attempts = []

    def failing_query(self, *args, **kwargs):
        attempts.append(self.pk)
        if self.pk == rows[2].pk:
            with connection.cursor() as cursor:
                cursor.execute('SELECT 1 / 0')  # a DataError: it aborts the chunk's transaction
        return real_sync(self, *args, **kwargs)

    with mock.patch.object(m.BasicMaster, 'cqrs_sync', failing_query), capture_events() as events:
        result = manage('cqrs_sync', '-cid', 'basic', '-f', '{}')
    assert result.code == 1
    assert 'Done!\n3 instance(s) synced.\n4 instance(s) processed.\n' in result.out
    assert f'Sync record failed for pk={rows[2].pk}: DataError' in result.out
    assert sorted(e.pk for e in events) == sorted(r.pk for r in rows if r is not rows[2])
    assert attempts.count(rows[0].pk) == 2  # the chunk, then row by row
    from dj_cqrs.master.outbox import OutboxEvent

    assert not OutboxEvent.objects.filter(instance_pk=str(rows[2].pk)).exists()


def test_progress_lines_when_not_a_terminal():
    _basic(3)
    result = call('cqrs_sync', '-cid', 'basic', '-f', '{}', '-b', '2', '--progress')
    lines = result.out.splitlines()
    assert lines[0] == 'Processing 3 records with batch size 2'
    assert re.fullmatch(r'3 of 3 processed - 100% with rate \d+\.\d rps, to go 0:00:00', lines[1])
    assert lines[2:] == ['Done!', '3 instance(s) synced.', '3 instance(s) processed.']


def test_no_progress_with_verbosity_0():
    _basic(2)
    result = call('cqrs_sync', '-cid', 'basic', '-f', '{}', '-p', verbosity=0)
    assert result.out == 'Done!\n2 instance(s) synced.\n2 instance(s) processed.\n'


def test_wrong_cqrs_id():
    with pytest.raises(CommandError, match=r'^Wrong CQRS ID: nope! Master CQRS IDs of this service: .*basic'):
        call('cqrs_sync', '-cid', 'nope', '-f', '{}')


# -- progress ---------------------------------------------------------------------------------------
class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Stream:
    def __init__(self, tty):
        self.text = ''
        self.tty = tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_status_line_rate_and_eta():
    assert status_line(250, 1000, 5.0) == '250 of 1000 processed - 25% with rate 50.0 rps, to go 0:00:15'
    assert status_line(0, 0, 0.0) == '0 of 0 processed - 100% with rate 0.0 rps, to go 0:00:00'
    # rows added during a run: the total grows with what was done
    assert status_line(12, 10, 1.0).startswith('12 of 12 processed - 100%')


def test_plain_progress_is_periodic():
    clock, stream = _Clock(), _Stream(tty=False)
    progress = Progress(stream, 100, clock=clock, interval=2.0)
    progress.advance(10)
    clock.now = 1.0
    progress.advance(10)
    assert stream.text == ''
    clock.now = 2.5
    progress.advance(10)
    assert stream.text == '30 of 100 processed - 30% with rate 12.0 rps, to go 0:00:06\n'
    clock.now = 3.0
    progress.close()
    progress.advance(5)  # ignored after close
    assert stream.text.splitlines()[-1] == '30 of 100 processed - 30% with rate 10.0 rps, to go 0:00:07'


def test_terminal_progress_is_a_tqdm_bar():
    pytest.importorskip('tqdm')
    stream = _Stream(tty=True)
    progress = Progress(stream, 4)
    progress.advance(4)
    progress.close()
    assert '\r' in stream.text
    assert '4/4' in stream.text
    assert 'records/s' in stream.text


def test_terminal_progress_without_tqdm_falls_back_to_lines():
    stream = _Stream(tty=True)
    with mock.patch('dj_cqrs.ops.progress._tqdm', return_value=None):
        progress = Progress(stream, 2)
    progress.advance(2)
    progress.close()
    assert stream.text.startswith('2 of 2 processed - 100%')


def test_disabled_progress_writes_nothing():
    progress = Progress.disabled()
    progress.advance(3)
    progress.close()
    assert not progress.enabled


def test_uuid_filter_value_is_checked():
    with pytest.raises(CommandError, match=r'^Bad filter kwargs! .*is not a valid UUID'):
        call('cqrs_sync', '-cid', 'typed', '-f', f'{{"id": "{uuid.uuid4().hex[:5]}"}}')


# -- asynchronous transports ---------------------------------------------------------------------------
def _async_produce(settle_after):
    """A producer that accepts the outbox event's ticket and confirms it later (or never)."""
    import threading

    from dj_cqrs.transport.base import current_ticket

    def produce(payload):
        ticket = current_ticket.get()
        ticket.accept()
        if settle_after is not None:
            threading.Timer(settle_after, ticket.settle, [True]).start()
        return True

    return produce


def test_sync_waits_for_the_brokers_confirms():
    from dj_cqrs.models import OutboxEvent

    _basic(2)
    OutboxEvent.objects.all().delete()
    with mock.patch('dj_cqrs.controller.producer.produce', _async_produce(0.3)):
        result = call('cqrs_sync', '-cid', 'basic', '-f', '{}')
    assert result.out.endswith('2 instance(s) synced.\n2 instance(s) processed.\n')
    assert not OutboxEvent.objects.exists()  # confirmed, and the delivered rows deleted


def test_unconfirmed_syncs_are_reported():
    _basic(1)
    with (
        mock.patch('dj_cqrs.controller.producer.produce', _async_produce(None)),
        mock.patch('dj_cqrs.ops.sync.CONFIRM_TIMEOUT', 0.2),
    ):
        result = manage('cqrs_sync', '-cid', 'basic', '-f', '{}')
    from dj_cqrs.master import publisher

    publisher.in_flight.add(-1)  # the event this test never confirmed
    assert result.code == 1
    assert (
        'CommandError: 1 SYNC event(s) were not confirmed by the broker in time: they stay in the outbox'
        in result.err
    )
