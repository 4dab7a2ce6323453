"""Concurrent appliers of one row never store an older revision (UPSTREAM_SPEC §11 #9, fixed).

Real PostgreSQL connections: every thread has its own Django connection and closes it at the end.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection, connections

from dj_cqrs.controller.consumer import route_signal_to_replica_model
from dj_cqrs.models import ReplicaTombstone
from tests.replica._helpers import basic, db_tx, ts
from tests.testapp import models as m

pytestmark = db_tx


@pytest.fixture(autouse=True)
def slow_handlers(monkeypatch):
    """A handler that takes a moment (as real ones do) widens the read-compare-write window, so
    an implementation without row locking loses this race reliably."""
    update = m.BasicReplica.cqrs_update
    create = m.BasicReplica.cqrs_create.__func__

    def cqrs_update(self, *args, **kwargs):
        time.sleep(0.003)
        return update(self, *args, **kwargs)

    def cqrs_create(cls, *args, **kwargs):
        time.sleep(0.003)
        return create(cls, *args, **kwargs)

    monkeypatch.setattr(m.BasicReplica, 'cqrs_update', cqrs_update)
    monkeypatch.setattr(m.BasicReplica, 'cqrs_create', classmethod(cqrs_create))


@pytest.fixture
def no_downgrade_trigger():
    """A PostgreSQL trigger that fails any UPDATE lowering a stored revision: a race that lets an
    older revision overwrite a newer one becomes a failed (False) apply instead of going unseen."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE OR REPLACE FUNCTION cqrs_test_no_downgrade() RETURNS trigger AS $$
            BEGIN
                IF NEW.cqrs_revision < OLD.cqrs_revision THEN
                    RAISE EXCEPTION 'revision went back from % to %', OLD.cqrs_revision, NEW.cqrs_revision;
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            DROP TRIGGER IF EXISTS cqrs_test_no_downgrade ON testapp_basicreplica;
            CREATE TRIGGER cqrs_test_no_downgrade BEFORE UPDATE ON testapp_basicreplica
                FOR EACH ROW EXECUTE FUNCTION cqrs_test_no_downgrade();
            """
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            'DROP TRIGGER IF EXISTS cqrs_test_no_downgrade ON testapp_basicreplica;'
            'DROP FUNCTION IF EXISTS cqrs_test_no_downgrade();'
        )


def _run_threads(workers):
    """Run each callable in its own thread, started together; return their results / errors."""
    barrier = threading.Barrier(len(workers))
    results: list = [None] * len(workers)
    errors: list = []

    def runner(i, work):
        try:
            barrier.wait(timeout=10)
            results[i] = work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    return results


def _apply_all(events):
    def work():
        return [
            bool(route_signal_to_replica_model(kind, cqrs_id, data, reuse_connections=True))
            for kind, cqrs_id, data in events
        ]

    return work


def test_concurrent_updates_never_leave_an_older_revision(no_downgrade_trigger):
    m.BasicReplica.objects.create(**basic(rev=0))
    revisions = list(range(1, 41))
    rng = random.Random(1234)
    streams = []
    for _ in range(4):
        shuffled = revisions[:]
        rng.shuffle(shuffled)
        streams.append([('SAVE', 'basic', basic(rev=r, minutes=r)) for r in shuffled])
    results = _run_threads([_apply_all(s) for s in streams])
    assert all(all(r) for r in results)  # stale ones are acknowledged (skipped), none failed
    row = m.BasicReplica.objects.get(pk=1)
    assert (row.cqrs_revision, row.name, row.counter) == (40, 'r40', 40)


def test_concurrent_ascending_and_descending_streams(no_downgrade_trigger):
    m.BasicReplica.objects.create(**basic(rev=0))
    up = [('SAVE', 'basic', basic(rev=r, minutes=r)) for r in range(1, 31)]
    down = list(reversed(up))
    for _ in range(3):
        results = _run_threads([_apply_all(up), _apply_all(down)])
        assert results == [[True] * 30, [True] * 30]
        row = m.BasicReplica.objects.get(pk=1)
        assert (row.cqrs_revision, row.name) == (30, 'r30')


def test_concurrent_creates_of_one_row_end_at_newest(no_downgrade_trigger):
    for attempt in range(5):
        pk = 100 + attempt
        workers = [_apply_all([('SAVE', 'basic', basic(pk=pk, rev=r, minutes=r))]) for r in (0, 1, 2, 3)]
        results = _run_threads(workers)
        assert results == [[True]] * 4  # the losers of the INSERT race become updates, not failures
        row = m.BasicReplica.objects.get(pk=pk)
        assert (row.cqrs_revision, row.name) == (3, 'r3')


def test_concurrent_delete_and_stale_saves_do_not_resurrect():
    m.BasicReplica.objects.create(**basic(rev=5, minutes=5))
    delete = ('DELETE', 'basic', {'id': 1, 'cqrs_revision': 6, 'cqrs_updated': ts(6)})
    stale = [('SAVE', 'basic', basic(rev=r, minutes=r)) for r in (3, 4, 5)]
    _run_threads([_apply_all([delete]), _apply_all(stale), _apply_all(list(reversed(stale)))])
    assert not m.BasicReplica.objects.filter(pk=1).exists()
    assert ReplicaTombstone.objects.get(cqrs_id='basic', pk_value='1').cqrs_revision == 6


def test_concurrent_create_and_newer_delete_never_leave_the_row():
    """SAVE (create, T0) and DELETE (T1) of an absent row racing: the delete is newer, so the row must
    end up absent whichever commits first."""
    for attempt in range(8):
        pk = 200 + attempt
        save = ('SAVE', 'basic', basic(pk=pk, rev=0, minutes=0))
        delete = ('DELETE', 'basic', {'id': pk, 'cqrs_revision': 1, 'cqrs_updated': ts(1)})
        results = _run_threads([_apply_all([save]), _apply_all([delete])])
        assert results == [[True], [True]]
        assert not m.BasicReplica.objects.filter(pk=pk).exists(), f'attempt {attempt}: row resurrected'
