"""Outbox rows written by :func:`outbox.deferred` (the tools' many events per transaction): one
``unnest`` INSERT on PostgreSQL, one INSERT per row elsewhere; every target gets the id of its own
row, in order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from dj_cqrs.master import outbox
from dj_cqrs.master.outbox import OutboxEvent
from tests.support import services

pytestmark = pytest.mark.django_db(transaction=True)


class Target:
    outbox_id: int | None = None


def write(using: str, n: int) -> list[Target]:
    targets = [Target() for _ in range(n)]
    with transaction.atomic(using=using), outbox.deferred(using):
        for i, target in enumerate(targets):
            queue = 'q' if i % 2 else None
            previous = {'i': i} if i % 3 == 0 else None
            assert outbox.defer(using, target, 'basic', 'SYNC', i, queue=queue, previous_data=previous)
    return targets


def check(using: str, targets: list[Target]) -> None:
    rows = {r.id: r for r in OutboxEvent.objects.using(using).all()}
    assert len(rows) == len(targets)
    for i, target in enumerate(targets):
        row = rows[target.outbox_id]
        assert (row.cqrs_id, row.signal_type, row.instance_pk) == ('basic', 'SYNC', str(i))
        assert row.queue == ('q' if i % 2 else None)
        assert (row.previous_data is not None) == (i % 3 == 0)
        assert row.attempts == 0 and row.created_at is not None


def test_postgresql_writes_the_rows_with_one_statement_and_ids_in_order():
    with CaptureQueriesContext(connections['default']) as queries:
        targets = write('default', outbox.DEFERRED_INSERT_ROWS)
    inserts = [q['sql'] for q in queries if q['sql'].startswith('INSERT')]
    assert len(inserts) == 1 and 'unnest(' in inserts[0], [q['sql'][:80] for q in queries]
    check('default', targets)
    assert [t.outbox_id for t in targets] == sorted(t.outbox_id for t in targets)


def test_one_row_is_one_plain_insert():
    targets = write('default', 1)
    check('default', targets)


@pytest.fixture(params=['sqlite', 'mariadb'])
def other_db(request: Any, django_db_blocker: Any, tmp_path: Any) -> Iterator[str]:
    with ExitStack() as stack:
        if request.param == 'sqlite':
            config: dict[str, Any] = {
                'ENGINE': 'django.db.backends.sqlite3',
                'NAME': str(tmp_path / 'o.sqlite3'),
            }
        else:
            config = stack.enter_context(services.mariadb_settings('cqrs_outbox'))
        alias = stack.enter_context(services.django_alias(f'outbox_{request.param}', config))
        with django_db_blocker.unblock():
            with connections[alias].schema_editor() as editor:
                editor.create_model(OutboxEvent)
            yield alias


def test_other_databases_write_one_insert_per_row(other_db):
    targets = write(other_db, 7)
    check(other_db, targets)
