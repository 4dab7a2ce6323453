"""Batched apply keeps every rule of one-by-one application (fencing, isolation, hooks, acks)."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from dj_cqrs.consumer.worker import Worker, replica_topology
from dj_cqrs.payload import TransportPayload
from dj_cqrs.transport.bridge import outbound_message
from dj_cqrs.transport.memory import MemoryBroker
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {
    'transport': 'dj_cqrs.testing.MemoryTransport',
    'queue': 'batchq',
    'replica': {'CQRS_MAX_RETRIES': 0, 'CQRS_BATCH_SIZE': 500},
}


class RecordingConsumer:
    """Wraps a broker consumer: records acks and checks no transaction is open when acking."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.acked: list[Any] = []
        self.dropped: list[Any] = []

    def fetch(self, n: int, timeout: float) -> Any:
        return self.inner.fetch(n, timeout)

    def ack(self, deliveries: Any) -> None:
        assert not connections['default'].in_atomic_block, 'acked before the commit'
        self.acked += deliveries
        self.inner.ack(deliveries)

    def drop(self, delivery: Any) -> None:
        self.dropped.append(delivery)
        self.inner.drop(delivery)

    def requeue(self, delivery: Any) -> None:
        self.inner.requeue(delivery)

    def publish(self, messages: Any) -> Any:
        return self.inner.publish(messages)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def run():
    with override_settings(CQRS=SETTINGS):
        broker = MemoryBroker()
        worker = Worker(broker, replica_topology())
        consumer = RecordingConsumer(broker.open_consumer(worker.topology, worker.prefetch))

        def go(payloads: list[TransportPayload]) -> tuple[Worker, RecordingConsumer]:
            broker.publish([outbound_message(p) for p in payloads])
            while worker.run_once(consumer, timeout=0.05):
                pass
            return worker, consumer

        go.broker = broker  # type: ignore[attr-defined]
        yield go
        consumer.close()


def basic(
    pk: int, rev: int, name: str = 'n', updated: str = '2024-05-01 10:00:00+00:00', **kw: Any
) -> TransportPayload:
    data = {'id': pk, 'name': name, 'counter': rev, 'cqrs_revision': rev, 'cqrs_updated': updated}
    data.update(kw.pop('data', {}))
    return TransportPayload(kw.pop('signal_type', 'SAVE'), 'basic', data, pk, **kw)


def delete(pk: int, rev: int, updated: str) -> TransportPayload:
    return TransportPayload('DELETE', 'basic', {'id': pk, 'cqrs_revision': rev, 'cqrs_updated': updated}, pk)


def test_revisions_of_one_row_coalesce_into_few_queries(run):
    payloads = [basic(1, rev, f'v{rev}', f'2024-05-01 10:00:{rev:02d}+00:00') for rev in range(50)]
    with CaptureQueriesContext(connections['default']) as queries:
        worker, consumer = run(payloads)
    row = m.BasicReplica.objects.get(pk=1)
    assert (row.name, row.cqrs_revision) == ('v49', 49)
    assert len(consumer.acked) == 50 and worker.applied == 50
    writes = [q['sql'] for q in queries.captured_queries if q['sql'].startswith(('INSERT', 'UPDATE'))]
    assert len(writes) == 1, writes


def test_fencing_inside_a_batch_logs_like_one_by_one(run, caplog):
    caplog.set_level(logging.WARNING, 'django-cqrs')
    run([basic(2, 0), basic(2, 3, 'three'), basic(2, 1, 'old'), basic(2, 3, 'dup')])
    row = m.BasicReplica.objects.get(pk=2)
    assert (row.name, row.cqrs_revision) == ('three', 3)
    text = caplog.text
    assert 'Lost or filtered out 2 CQRS packages: pk = 2, cqrs_revision = 3 (basic)' in text
    assert 'Wrong CQRS sync order: pk = 2, cqrs_revision = new 1 / existing 3 (basic).' in text
    assert 'Received duplicate CQRS data: pk = 2, cqrs_revision = 3 (basic).' in text


def test_a_failing_event_does_not_fail_its_batch(run):
    bad = basic(11, 0, data={'counter': 'not a number'})
    worker, consumer = run([basic(10, 0), bad, basic(12, 0), basic(13, 0, data={'name': None})])
    assert set(m.BasicReplica.objects.values_list('pk', flat=True)) == {10, 12}
    assert worker.applied == 2
    assert len(consumer.acked) == 2
    assert len(consumer.dropped) == 2, 'the failures went to the dead-letter queue (CQRS_MAX_RETRIES=0)'
    assert run.broker.queue_size('dead_letter_batchq') == 2


def test_hooks_see_every_event_of_a_batch(run):
    def tracked(rev: int, text: str) -> TransportPayload:
        data = {'id': 5, 'char_field': text, 'publisher': None, 'cqrs_revision': rev}
        data['cqrs_updated'] = f'2024-05-01 10:00:0{rev}+00:00'
        return TransportPayload(
            'SAVE', 'tracked', data, 5, meta={'rev': rev}, previous_data={'char_field': rev}
        )

    run([tracked(rev, f't{rev}') for rev in range(4)])
    log = list(m.HookLog.objects.order_by('id').values_list('action', 'meta'))
    assert log == [
        ('create', {'rev': 0}),
        ('update', {'rev': 1}),
        ('update', {'rev': 2}),
        ('update', {'rev': 3}),
    ]
    assert m.TrackedReplica.objects.get(pk=5).text == 't3'


def test_delete_and_stale_replay_in_one_batch_leave_no_row(run):
    run(
        [
            basic(20, 0, updated='2024-05-01 10:00:00+00:00'),
            basic(20, 1, updated='2024-05-01 10:00:01+00:00'),
            delete(20, 2, '2024-05-01 10:00:02+00:00'),
            basic(20, 1, updated='2024-05-01 10:00:01+00:00'),  # a replayed, older SAVE
        ]
    )
    assert not m.BasicReplica.objects.filter(pk=20).exists()


def test_recreated_after_delete_in_one_batch_is_kept(run):
    run(
        [
            basic(21, 4, updated='2024-05-01 10:00:00+00:00'),
            delete(21, 5, '2024-05-01 10:00:01+00:00'),
            basic(21, 0, 'reborn', updated='2024-05-01 10:00:02+00:00'),
        ]
    )
    row = m.BasicReplica.objects.get(pk=21)
    assert (row.name, row.cqrs_revision) == ('reborn', 0)


@pytest.fixture
def refused_at_commit():
    """A deferred constraint trigger on the replica table: every transaction that wrote a row
    fails at its COMMIT (as a commit the server cannot complete does)."""
    with connections['default'].cursor() as cursor:
        cursor.execute(
            'CREATE FUNCTION cqrs_test_refuse() RETURNS trigger AS $$ '
            "BEGIN RAISE EXCEPTION 'refused at commit'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            'CREATE CONSTRAINT TRIGGER cqrs_test_refuse AFTER INSERT OR UPDATE ON testapp_basicreplica '
            'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cqrs_test_refuse()'
        )
    yield
    with connections['default'].cursor() as cursor:
        cursor.execute('DROP TRIGGER cqrs_test_refuse ON testapp_basicreplica')
        cursor.execute('DROP FUNCTION cqrs_test_refuse()')


def test_a_commit_refused_by_the_database_acks_nothing(run, refused_at_commit):
    # The bulk lane sends its writes and the COMMIT in one round trip; the refusal reruns the
    # batch in the hook lane, whose commit (Django's) is refused too.
    worker, consumer = run([basic(32, 0), basic(33, 0)])
    assert consumer.acked == []
    assert not m.BasicReplica.objects.filter(pk__in=[32, 33]).exists()
    assert worker.applied == 0
    assert run.broker.queue_size('dead_letter_batchq') == 2


def test_a_failed_commit_acks_nothing(run):
    connection = connections['default']
    # A connection lost at the COMMIT that Django sends itself (the hook lane's).
    with (
        mock.patch('dj_cqrs.replica.apply._bulk_eligible', return_value=False),
        mock.patch.object(connection, 'commit', side_effect=OperationalError('server closed the connection')),
    ):
        worker, consumer = run([basic(30, 0), basic(31, 0)])
    assert consumer.acked == []
    assert not m.BasicReplica.objects.filter(pk__in=[30, 31]).exists()
    assert worker.applied == 0
    assert run.broker.queue_size('dead_letter_batchq') == 2, (
        'failed, then dead-lettered per the retry settings'
    )


def test_sync_batches_apply_equal_revisions(run):
    run([basic(40, 2, 'saved')])
    run([basic(40, 2, 'repaired', signal_type='SYNC')])
    assert m.BasicReplica.objects.get(pk=40).name == 'repaired'
