"""The transactional outbox of the master (ARCHITECTURE §3).

Every event is first a row of ``dj_cqrs_outbox``, written in the same transaction and database as
the change it describes. After the commit the row's event is published at once (the fast path);
when the broker confirmed it, the row's id joins a buffer of delivered ids that is deleted in
batches. A row whose event was not confirmed stays, and the relay (``manage.py cqrs_relay``, plus a
bounded catch-up inside the fast path) publishes it later. Nothing committed is lost: the worst
case is a duplicate, which the replica's revision fence makes harmless.

SAVE and SYNC rows do not hold the serialized instance: it is serialized when published, from
committed state. DELETE rows hold their full body, since the row they describe is gone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.utils import timezone

from dj_cqrs.core import codec

logger = logging.getLogger('django-cqrs')

#: Delivered ids are deleted when this many are buffered, or after FLUSH_INTERVAL seconds.
FLUSH_BATCH = 200
FLUSH_INTERVAL = 1.0


class OutboxEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    cqrs_id = models.CharField(max_length=255)
    signal_type = models.CharField(max_length=8)
    instance_pk = models.CharField(max_length=255)
    queue = models.CharField(max_length=255, null=True)
    #: The full encoded body (DELETE events); null for SAVE / SYNC, serialized when published.
    body = models.TextField(null=True)
    #: Tracked previous values of a SAVE, encoded JSON.
    previous_data = models.TextField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    attempts = models.IntegerField(default=0)

    class Meta:
        app_label = 'dj_cqrs'
        db_table = 'dj_cqrs_outbox'

    def __str__(self) -> str:
        return f'{self.signal_type} {self.cqrs_id}:{self.instance_pk} (#{self.id})'


def _values(
    connection: Any,
    cqrs_id: str,
    signal_type: str,
    instance_pk: Any,
    queue: str | None,
    body: bytes | None,
    previous_data: Any,
) -> list[Any]:
    """The values of an outbox row in ``_COLUMNS`` order."""
    return [
        cqrs_id,
        signal_type,
        str(codec.json_value(instance_pk)),
        queue,
        body.decode('ascii') if body is not None else None,
        codec.dumps(previous_data) if previous_data is not None else None,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        0,
    ]


def record(
    using: str,
    cqrs_id: str,
    signal_type: str,
    instance_pk: Any,
    *,
    queue: str | None = None,
    body: bytes | None = None,
    previous_data: Any = None,
) -> int:
    """Insert an outbox row on ``using`` (inside the caller's transaction); return its id.

    One plain INSERT: this runs for every event, on the path of the user's save().
    """
    connection = connections[using]
    values = _values(connection, cqrs_id, signal_type, instance_pk, queue, body, previous_data)
    return _insert(connection, [values])[0]


def _insert(connection: Any, rows: list[list[Any]]) -> list[int]:
    """Insert outbox rows (values in ``_COLUMNS`` order); return their ids, in order.

    On PostgreSQL several rows are one ``INSERT ... SELECT FROM unnest(...) RETURNING`` with one
    array per column (ids in the order of the arrays, as Django's ``bulk_create`` relies on too):
    a short statement whatever the row count, which the driver does not have to parse for
    thousands of placeholders. One INSERT per row elsewhere.
    """
    qn = connection.ops.quote_name
    insert = f'INSERT INTO {qn(OutboxEvent._meta.db_table)} ({_columns(connection)})'
    returning = f' RETURNING {qn("id")}' if connection.features.can_return_columns_from_insert else ''
    with connection.cursor() as cursor:
        if len(rows) > 1 and connection.vendor == 'postgresql':
            columns = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(f'{insert} SELECT * FROM unnest({_UNNEST_ARRAYS}){returning}', columns)
            return [int(found[0]) for found in cursor.fetchall()]
        ids = []
        for row in rows:
            cursor.execute(f'{insert} VALUES ({_PLACEHOLDERS}){returning}', row)
            if returning:
                ids.append(int(cursor.fetchone()[0]))
            else:
                ids.append(int(connection.ops.last_insert_id(cursor, OutboxEvent._meta.db_table, 'id')))
        return ids


class _Deferred(threading.local):
    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[list[Any], Any]]] = {}


_deferred = _Deferred()


@contextlib.contextmanager
def deferred(using: str) -> Iterator[None]:
    """Inside a transaction on ``using``: the outbox rows that :func:`defer` collects in this block
    are written by one multi-row INSERT when it ends (still inside the transaction), and each
    target's ``outbox_id`` is set. For tools that write many events at once (``cqrs_sync``)."""
    if not connections[using].in_atomic_block:
        raise RuntimeError('outbox.deferred() needs a transaction')
    if using in _deferred.rows:
        yield
        return
    _deferred.rows[using] = []
    try:
        yield
        _write_deferred(using, _deferred.rows[using])
    finally:
        del _deferred.rows[using]


def defer(using: str, target: Any, cqrs_id: str, signal_type: str, instance_pk: Any, **kwargs: Any) -> bool:
    """Collect an outbox row for the enclosing :func:`deferred` block; False if there is none
    (then call :func:`record`)."""
    pending = _deferred.rows.get(using)
    if pending is None or not connections[using].in_atomic_block:
        return False
    values = _values(
        connections[using],
        cqrs_id,
        signal_type,
        instance_pk,
        kwargs.get('queue'),
        kwargs.get('body'),
        kwargs.get('previous_data'),
    )
    pending.append((values, target))
    return True


#: Rows per INSERT of :func:`deferred` (bounds the size of one statement).
DEFERRED_INSERT_ROWS = 1000


def _write_deferred(using: str, pending: list[tuple[list[Any], Any]]) -> None:
    connection = connections[using]
    for start in range(0, len(pending), DEFERRED_INSERT_ROWS):
        part = pending[start : start + DEFERRED_INSERT_ROWS]
        ids = _insert(connection, [values for values, _ in part])
        for (_, target), outbox_id in zip(part, ids, strict=True):
            target.outbox_id = outbox_id


def fuse(
    connection: Any,
    sql: str,
    params: Any,
    cqrs_id: str,
    signal_type: str,
    *,
    pk_column: str | None = None,
    instance_pk: Any = None,
    previous_data: Any = None,
) -> tuple[str, list[Any]]:
    """Extend one row-writing statement of the caller (PostgreSQL) so that the same statement also
    writes the row's outbox event; an UPDATE that matches no row writes no event.

    ``sql`` must end in ``RETURNING`` some columns of the row, among them ``pk_column`` when the
    primary key is not given as ``instance_pk``. The combined statement returns those columns
    followed by the outbox id. One statement for two rows: no extra round trip on the save path
    and, in autocommit mode, no BEGIN / COMMIT around them (a statement is atomic).
    """
    qn = connection.ops.quote_name
    values = _values(connection, cqrs_id, signal_type, instance_pk, None, None, previous_data)
    placeholders = ['%s'] * len(values)
    if instance_pk is None:
        placeholders[2] = f'("cqrs_row".{qn(pk_column)})::text'  # type: ignore[arg-type]
        del values[2]
    combined = (
        f'WITH "cqrs_row" AS ({sql}), "cqrs_event" AS ('
        f'INSERT INTO {qn(OutboxEvent._meta.db_table)} ({_columns(connection)}) '
        f'SELECT {", ".join(placeholders)} FROM "cqrs_row" RETURNING {qn("id")}) '
        f'SELECT "cqrs_row".*, "cqrs_event".{qn("id")} FROM "cqrs_row", "cqrs_event"'
    )
    return combined, [*params, *values]


_COLUMNS = (
    'cqrs_id',
    'signal_type',
    'instance_pk',
    'queue',
    'body',
    'previous_data',
    'created_at',
    'attempts',
)
_PLACEHOLDERS = ', '.join(['%s'] * len(_COLUMNS))
#: One array parameter per column of ``_COLUMNS``, typed as the columns are.
_COLUMN_TYPES = ('varchar', 'varchar', 'varchar', 'varchar', 'text', 'text', 'timestamptz', 'integer')
_UNNEST_ARRAYS = ', '.join(f'%s::{t}[]' for t in _COLUMN_TYPES)


def _columns(connection: Any) -> str:
    columns = _quoted_columns.get(connection.vendor)
    if columns is None:
        columns = ', '.join(connection.ops.quote_name(c) for c in _COLUMNS)
        _quoted_columns[connection.vendor] = columns
    return columns


_quoted_columns: dict[str, str] = {}


class _DeliveredBuffer:
    """Ids of delivered rows per database alias, deleted in batches by a background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, list[int]] = defaultdict(list)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = 0.0

    def add(self, using: str, ids: list[int]) -> None:
        with self._lock:
            if not any(self._ids.values()):
                self._since = time.monotonic()
            self._ids[using].extend(ids)
            full = len(self._ids[using]) >= FLUSH_BATCH
            self._ensure_thread()
        if full:
            self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name='dj_cqrs-outbox-flush', daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            if self.pending():
                try:
                    self.flush()
                finally:
                    # Never hold a database session while idle (it would keep test databases from
                    # being dropped, and count against the server's connection limit).
                    connections.close_all()

    def take(self) -> dict[str, list[int]]:
        with self._lock:
            taken = {alias: ids for alias, ids in self._ids.items() if ids}
            self._ids = defaultdict(list)
        return taken

    def flush(self, quiet: bool = False) -> int:
        """Delete the buffered rows now; return how many ids were flushed."""
        flushed = 0
        for alias, ids in self.take().items():
            try:
                for start in range(0, len(ids), 1000):
                    OutboxEvent.objects.using(alias).filter(id__in=ids[start : start + 1000]).delete()
                flushed += len(ids)
            except Exception:
                # The rows stay and will be published again by the relay: a duplicate, not a loss.
                (logger.debug if quiet else logger.warning)(
                    'CQRS outbox cleanup failed on %s; rows are redelivered.', alias, exc_info=True
                )
        return flushed

    def pending(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._ids.values())


delivered = _DeliveredBuffer()


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest_age: float | None  # seconds


def backlog(using: str = 'default') -> Backlog:
    """Undelivered events on ``using``: how many, and the age of the oldest in seconds."""
    rows = OutboxEvent.objects.using(using)
    oldest = rows.order_by('id').values_list('created_at', flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else None
    return Backlog(count=rows.count(), oldest_age=age)


def table_exists(using: str) -> bool:
    cache = _table_cache.get(using)
    if cache is None:
        cache = OutboxEvent._meta.db_table in connections[using].introspection.table_names()
        _table_cache[using] = cache
    return cache


_table_cache: dict[str, bool] = {}
