"""Applying a batch of received events in one transaction per database.

Two lanes, with the same revision rules and log lines as one-by-one application:

* the **bulk lane**, for models that keep every default hook (``cqrs_save`` / ``cqrs_create`` /
  ``cqrs_update`` / ``cqrs_delete``, no ``CQRS_CUSTOM_SERIALIZATION``, no save signal receivers)
  on a database that can upsert on the primary key: the rows of the batch are locked and read once
  (on PostgreSQL after the absent-row locks of all of them, together with their tombstones, in one
  round trip), the events are folded in Python (several revisions of a row coalesce to the newest),
  and the result is written with one upsert per field set, one delete and the tombstone changes (on
  PostgreSQL ``INSERT ... SELECT FROM unnest(...)`` statements, all sent in one round trip; Django's
  ``bulk_create`` elsewhere and for columns that cannot travel as arrays). The lane has no
  savepoint: if it fails, the whole batch transaction is rolled back and the batch runs again with
  that model's events in the other lane;
* the **hook lane**, for everything else: each event is applied through
  ``dj_cqrs.controller.consumer.consume`` (the upstream seam) inside its own savepoint, so one
  failing event does not fail its batch and every hook sees every event.

Nothing is acknowledged here: the consumer acks after the transactions commit.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import math
import re
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections, models, transaction
from django.db.models import signals as model_signals
from django.db.models.deletion import Collector
from django.utils import timezone

from dj_cqrs.constants import SignalType
from dj_cqrs.log_context import event_context
from dj_cqrs.replica import mapping, tombstones
from dj_cqrs.replica.dispatch import apply_query_timeouts, keep_connections_usable, replica_db
from dj_cqrs.replica.managers import (
    ABSENT_ROW_LOCK_SQL,
    ReplicaManager,
    absent_row_lock_keys,
    delete_is_stale,
    last_error,
    last_skip,
    lock_absent_rows,
    should_apply,
    tombstone_hides,
)
from dj_cqrs.replica.mixins import ReplicaMixin

logger = logging.getLogger('django-cqrs')


@dataclass
class Item:
    """One event of a batch; ``result`` / ``error`` are filled in by :func:`apply_batch`."""

    payload: Any
    model: Any
    result: Any = None
    error: BaseException | None = None
    #: why an acknowledged event was not applied (older, duplicate, deleted row...), else None
    skipped: str | None = None


class _BulkFailed(Exception):
    """The bulk lane of ``model`` failed: the batch is rolled back and run again without it."""

    def __init__(self, model: Any, cause: BaseException) -> None:
        super().__init__(model, cause)
        self.model = model
        self.cause = cause


def apply_batch(items: Sequence[Item]) -> None:
    """Apply ``items`` (in order per row) and commit. On a failed commit every item fails.

    The bulk lane runs without a savepoint of its own: when it fails, the whole batch transaction
    is rolled back and the batch runs again with that model's events in the hook lane.
    """
    models_used = {item.model for item in items if not item.model.CQRS_NO_DB_OPERATIONS}
    dbs = sorted({replica_db(model) for model in models_used})
    forced: set[Any] = set()
    while True:
        if dbs:
            keep_connections_usable()
            for model in models_used:
                apply_query_timeouts(model)
        try:
            with ExitStack() as stack:
                for db in dbs:
                    stack.enter_context(transaction.atomic(using=db))
                _apply(items, forced, len(dbs) == 1 and _outermost(dbs[0]))
        except _BulkFailed as failed:
            logger.warning(
                'CQRS bulk apply of %s events failed (%s); applying one by one.',
                failed.model.CQRS_ID,
                failed.cause,
            )
            forced.add(failed.model)
            for item in items:
                item.result, item.error, item.skipped = None, None, None
            continue
        except DatabaseError as exc:
            logger.error('%s\nCQRS batch of %s events failed to commit.', exc, len(items))
            for item in items:
                item.result, item.error = None, exc
        return


def _outermost(db: str) -> bool:
    """Whether the batch's transaction on ``db`` is a real one (not inside a caller's atomic block)."""
    return len(connections[db].atomic_blocks) == 1


def _apply(items: Sequence[Item], forced: set[Any], sole_transaction: bool) -> None:
    """``sole_transaction``: the batch's transaction is the outermost one, on one database."""
    bulk: dict[Any, list[Item]] = {}
    eligible: dict[Any, bool] = {}
    for item in items:
        model = item.model
        ok = eligible.get(model)
        if ok is None:
            ok = eligible[model] = model not in forced and _bulk_eligible(model)
        if ok:
            bulk.setdefault(model, []).append(item)
    done: set[int] = set()
    # When one bulk lane is all the batch does, its last round trip commits too (the COMMIT
    # Django sends at the end of the block then finds no transaction open, and sends nothing).
    commits = sole_transaction and len(bulk) == 1 and len(next(iter(bulk.values()), ())) == len(items)
    for model, group in bulk.items():
        try:
            _BulkLane(model, replica_db(model), group).run(commits)
        except (DatabaseError, ValidationError, ValueError, TypeError) as exc:
            raise _BulkFailed(model, exc) from exc
        done.update(id(item) for item in group)
    for item in items:
        if id(item) not in done:
            _apply_one(item)


def _apply_one(item: Item) -> None:
    with event_context(item.payload):
        _apply_in_savepoint(item)


def _apply_in_savepoint(item: Item) -> None:
    from dj_cqrs.controller import consumer

    uses_db = not item.model.CQRS_NO_DB_OPERATIONS
    db = replica_db(item.model)
    token = last_error.set(None)
    skip_token = last_skip.set(None)
    try:
        with transaction.atomic(using=db) if uses_db else ExitStack():
            try:
                item.result = consumer.consume(item.payload)
            except Exception as exc:
                logger.error('CQRS service exception', exc_info=True)
                item.result, item.error = None, exc
            if not item.result and uses_db:
                transaction.set_rollback(True, using=db)  # a failed event leaves nothing behind
    except DatabaseError as exc:
        item.result, item.error = None, exc
    finally:
        item.error = item.error or last_error.get()
        item.skipped = last_skip.get() if item.result else None
        last_error.reset(token)
        last_skip.reset(skip_token)


_eligibility: dict[Any, bool] = {}


def _bulk_eligible(model: Any) -> bool:
    cached = _eligibility.get(model)
    if cached is None:
        cached = _eligibility[model] = _defaults_kept(model)
    if not cached:
        return False
    if not connections[replica_db(model)].features.supports_update_conflicts_with_target:
        return False  # no upsert on the primary key (MySQL, MariaDB): bulk_create would fail
    # Receivers can be connected at any time, so this part is not cached.
    return not any(
        signal.has_listeners(model)
        for signal in (model_signals.pre_save, model_signals.post_save, model_signals.pre_init)
    )


def _defaults_kept(model: Any) -> bool:
    if not (isinstance(model, type) and issubclass(model, ReplicaMixin)) or model._meta.abstract:
        return False
    if model.CQRS_NO_DB_OPERATIONS or model.CQRS_CUSTOM_SERIALIZATION or model.CQRS_ONLY_DIRECT_SYNCS:
        return False
    for name in ('cqrs_save', 'cqrs_create', 'cqrs_delete'):
        if getattr(model, name).__func__ is not getattr(ReplicaMixin, name).__func__:
            return False
    if model.cqrs_update is not ReplicaMixin.cqrs_update:
        return False
    manager = type(model.cqrs)
    return all(
        getattr(manager, name) is getattr(ReplicaManager, name)
        for name in ('save_instance', 'create_instance', 'update_instance', 'delete_instance')
    )


@dataclass
class _Tomb:
    """A delete tombstone as the bulk lane reads and writes it."""

    cqrs_id: str
    pk_value: str
    cqrs_revision: Any
    cqrs_updated: Any


@dataclass
class _Row:
    exists: bool
    revision: Any = None
    updated: Any = None
    values: dict[str, Any] | None = None  # mapped values to write; None: untouched
    deleted: bool = False
    tombstone: Any = None
    tombstone_changed: bool = False
    tombstone_dropped: bool = False
    fields: set[str] = field(default_factory=set)


class _BulkLane:
    def __init__(self, model: Any, db: str, items: list[Item]) -> None:
        self.model = model
        self.db = db
        self.items = items
        self.pk_name = model._meta.pk.name
        self.manager = model._default_manager.db_manager(db)
        self.connection = connections[db]
        self.sql = _SqlPlan.of(model, self.connection)

    def run(self, commits: bool = False) -> None:
        """Apply the lane's events; ``commits``: the transaction ends with its writes."""
        prepared: list[tuple[Item, dict[str, Any] | None, str]] = []
        pks: dict[str, Any] = {}
        for item in self.items:
            mapped = self._map(item)
            key = ''
            if mapped is not None:
                pk = mapped[self.pk_name]
                key = self._key(pk)
                pks.setdefault(key, pk)
            prepared.append((item, mapped, key))
        rows = self._load(pks)
        for item, mapped, key in prepared:
            if mapped is None:
                item.result = None  # mapping failed (logged by mapping.py)
                continue
            token = last_skip.set(None)
            with event_context(item.payload):
                item.result = self._fold(item.payload.signal_type, mapped, rows[key])
            item.skipped = last_skip.get() if item.result else None
            last_skip.reset(token)
        if self.sql is not None:
            self._write_sql(rows, commits)
        else:
            self._write(rows)

    def _map(self, item: Item) -> dict[str, Any] | None:
        data = item.payload.instance_data
        if item.payload.signal_type == SignalType.DELETE:
            return mapping.map_delete_data(self.model, data)
        return mapping.map_save_data(self.model, data)

    def _key(self, pk: Any) -> str:
        return str(self.model._meta.pk.to_python(pk))

    # -- reading and locking -------------------------------------------------------------------------
    def _load(self, pks: dict[str, Any]) -> dict[str, _Row]:
        """Lock and read the rows of ``pks`` (key -> pk), and the tombstones of the absent ones.

        On PostgreSQL the absent-row locks of every key are taken first (sorted, as every lane
        takes them), so one read afterwards sees any row another worker created meanwhile: no
        worker can create one of these rows without holding its lock.
        """
        if not pks:
            return {}
        if self.sql is not None and self.sql.pk_cast is not None:
            found, tombs = self._read_sql(pks)
        else:
            found, tombs = self._read_orm(pks)
        rows: dict[str, _Row] = {}
        for key in pks:
            hit = found.get(key)
            if hit is not None:
                rows[key] = _Row(True, hit[0], hit[1])
            else:
                rows[key] = _Row(False, tombstone=tombs.get(key))
        return rows

    def _read_sql(self, pks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.sql is not None
        plan = self.sql
        pk_field = self.model._meta.pk
        lock_keys = absent_row_lock_keys(self.model, pks.values())
        pk_values = [
            pk_field.get_db_prep_value(pk_field.to_python(pk), self.connection) for pk in pks.values()
        ]
        statements = [
            (ABSENT_ROW_LOCK_SQL, [_array_param(lock_keys)]),
            (plan.select_rows, [_array_param(pk_values)]),
            (_SELECT_TOMBSTONES, [self.model.CQRS_ID, _array_param(list(pks))]),
        ]
        results = _execute(self.connection, statements, fetch=(1, 2))
        found = {self._key(pk): (revision, updated) for pk, revision, updated in results[1]}
        tombs = {
            key: _Tomb(self.model.CQRS_ID, key, revision, updated)
            for key, revision, updated in results[2]
            if key not in found
        }
        return found, tombs

    def _read_orm(self, pks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        lock_absent_rows(self.model, pks.values(), self.db)  # PostgreSQL only: before the read
        found = {
            self._key(pk): (revision, updated)
            for pk, revision, updated in self.manager.select_for_update()
            .filter(pk__in=list(pks.values()))
            .values_list('pk', 'cqrs_revision', 'cqrs_updated')
        }
        absent = [key for key in pks if key not in found]
        tombs: dict[str, Any] = {}
        if absent:
            tombs = {
                t.pk_value: t
                for t in tombstones.ReplicaTombstone.objects.using(self.db)
                .select_for_update()
                .filter(cqrs_id=self.model.CQRS_ID, pk_value__in=absent)
            }
        return found, tombs

    # -- folding -------------------------------------------------------------------------------------
    def _fold(self, signal_type: str, mapped: dict[str, Any], row: _Row) -> bool | None:
        pk = mapped[self.pk_name]
        if signal_type == SignalType.DELETE:
            if row.exists and delete_is_stale(row.updated, mapped['cqrs_updated']):
                logger.warning(
                    'Stale CQRS delete skipped: pk = %s, the row is newer (%s).', pk, self.model.CQRS_ID
                )
                return True
            row.exists, row.deleted, row.values, row.fields = False, True, None, set()
            tomb = row.tombstone
            if tomb is None or tombstones.is_newer(
                mapped['cqrs_revision'], mapped['cqrs_updated'], tomb.cqrs_revision, tomb.cqrs_updated
            ):
                row.tombstone = _Tomb(
                    cqrs_id=self.model.CQRS_ID,
                    pk_value=self._key(pk),
                    cqrs_revision=_int(mapped['cqrs_revision']),
                    cqrs_updated=tombstones.as_datetime(mapped['cqrs_updated']),
                )
                row.tombstone_changed, row.tombstone_dropped = True, False
            return True
        sync = signal_type == SignalType.SYNC
        if row.exists:
            verdict = should_apply(self.model, pk, mapped, row.revision, row.updated, sync)
            if verdict is None:
                return None  # a bad revision: a failure
            if not verdict:
                return True  # older or duplicate: skipped and acknowledged
        elif tombstone_hides(self.model, pk, mapped, row.tombstone):
            return True
        else:
            if row.tombstone is not None:
                row.tombstone_dropped, row.tombstone_changed = True, False
                row.tombstone = None
            row.exists = True
        row.revision, row.updated = mapped['cqrs_revision'], mapped['cqrs_updated']
        row.values = {**(row.values or {}), **mapped}
        row.fields |= set(mapped)
        return True

    # -- writing -------------------------------------------------------------------------------------
    def _write(self, rows: dict[str, _Row]) -> None:
        """Any database: Django's ``bulk_create`` and the ORM."""
        deletes = [key for key, row in rows.items() if row.deleted]
        if deletes:
            self.manager.filter(pk__in=deletes).delete()
        groups: dict[frozenset[str], list[models.Model]] = {}
        for row in rows.values():
            if row.exists and row.values is not None:
                groups.setdefault(frozenset(row.fields), []).append(self.model(**row.values))
        for fields, objs in groups.items():
            update_fields = sorted(fields - {self.pk_name})
            if update_fields:
                self.manager.bulk_create(
                    objs, update_conflicts=True, unique_fields=[self.pk_name], update_fields=update_fields
                )
            else:
                self.manager.bulk_create(objs, ignore_conflicts=True)
        dropped = [key for key, row in rows.items() if row.tombstone_dropped]
        tombs = tombstones.ReplicaTombstone.objects.using(self.db)
        if dropped:
            tombs.filter(cqrs_id=self.model.CQRS_ID, pk_value__in=dropped).delete()
        for row in rows.values():
            if row.tombstone_changed and row.tombstone is not None:
                tombs.update_or_create(
                    cqrs_id=row.tombstone.cqrs_id,
                    pk_value=row.tombstone.pk_value,
                    defaults={
                        'cqrs_revision': row.tombstone.cqrs_revision,
                        'cqrs_updated': row.tombstone.cqrs_updated,
                    },
                )

    def _write_sql(self, rows: dict[str, _Row], commits: bool = False) -> None:
        """PostgreSQL: every write of the batch as ``unnest`` statements, sent in one round trip
        where the driver allows it (the same rows and values as :meth:`_write`)."""
        assert self.sql is not None
        plan, connection = self.sql, self.connection
        statements: list[tuple[str, list[Any]]] = []
        deletes = [key for key, row in rows.items() if row.deleted]
        if deletes:
            if Collector(using=self.db, origin=None).can_fast_delete(self.model):
                pk_field = self.model._meta.pk
                values = [pk_field.get_db_prep_value(pk_field.to_python(k), connection) for k in deletes]
                statements.append((plan.delete_rows, [_array_param(values)]))
            else:  # cascades or delete signals: Django's collector
                self.manager.filter(pk__in=deletes).delete()
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in rows.values():
            if row.exists and row.values is not None:
                groups.setdefault(frozenset(row.fields), []).append(row.values)
        for fields, values in groups.items():
            statements.append(plan.upsert(fields - {self.pk_name}, values, connection))
        dropped = [key for key, row in rows.items() if row.tombstone_dropped]
        if dropped:
            statements.append((_DELETE_TOMBSTONES, [self.model.CQRS_ID, _array_param(dropped)]))
        changed = [row.tombstone for row in rows.values() if row.tombstone_changed and row.tombstone]
        if changed:
            statements.append(_tombstone_upsert(changed, connection))
        if statements:
            if commits and _multi_statement(connection):
                statements.append(('COMMIT', []))
            _execute(connection, statements)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# -- PostgreSQL statements of the bulk lane -----------------------------------------------------------
_TOMBSTONE_TABLE = tombstones.ReplicaTombstone._meta.db_table
_SELECT_TOMBSTONES = (
    f'SELECT pk_value, cqrs_revision, cqrs_updated FROM {_TOMBSTONE_TABLE} '
    'WHERE cqrs_id = %s AND pk_value = ANY(%s::varchar[]) FOR UPDATE'
)
_DELETE_TOMBSTONES = f'DELETE FROM {_TOMBSTONE_TABLE} WHERE cqrs_id = %s AND pk_value = ANY(%s::varchar[])'
_UPSERT_TOMBSTONES = (
    f'INSERT INTO {_TOMBSTONE_TABLE} (cqrs_id, pk_value, cqrs_revision, cqrs_updated, deleted_at) '
    'SELECT %s, t.pk_value, t.cqrs_revision, t.cqrs_updated, %s '
    'FROM unnest(%s::varchar[], %s::integer[], %s::timestamp with time zone[]) '
    'AS t(pk_value, cqrs_revision, cqrs_updated) '
    'ON CONFLICT (cqrs_id, pk_value) DO UPDATE SET cqrs_revision = EXCLUDED.cqrs_revision, '
    'cqrs_updated = EXCLUDED.cqrs_updated, deleted_at = EXCLUDED.deleted_at'
)

#: Column types that travel as a PostgreSQL array (``field.db_type()`` without its modifiers).
_ARRAY_TYPES = frozenset(
    {
        'integer',
        'bigint',
        'smallint',
        'varchar',
        'char',
        'text',
        'numeric',
        'boolean',
        'uuid',
        'date',
        'time',
        'timestamp',
        'timestamp with time zone',
        'double precision',
        'real',
        'interval',
    }
)
_TYPMOD = re.compile(r'\([^)]*\)')
_PLAIN_PRE_SAVE = (
    models.Field.pre_save,
    models.DateField.pre_save,
    models.DateTimeField.pre_save,
    models.TimeField.pre_save,
)


def _array_type(field: Any, connection: Any) -> str | None:
    """The base type of ``field``'s column (``varchar(100)`` -> ``varchar``: the INSERT, not the
    array cast, checks lengths and precision, as for any other insert); None if not supported."""
    db_type = field.db_type(connection)
    if not isinstance(db_type, str):
        return None
    base = ' '.join(_TYPMOD.sub('', db_type).lower().split())
    return base if base in _ARRAY_TYPES else None


class _SqlPlan:
    """The bulk lane's raw SQL for one model on one PostgreSQL connection (cached).

    ``None`` (use Django's ``bulk_create``) for other vendors and for models with a column that
    cannot travel as an array (JSON, arrays, relations, custom fields with their own ``pre_save``,
    database defaults, generated columns...).
    """

    _cache: dict[tuple[Any, str], _SqlPlan | None] = {}

    def __init__(self, model: Any, columns: list[tuple[Any, str]], connection: Any) -> None:
        quote = connection.ops.quote_name
        self.model = model
        self.columns = columns
        self.table = quote(model._meta.db_table)
        pk = model._meta.pk
        self.pk_column = quote(pk.column)
        self.pk_cast = next((cast for f, cast in columns if f is pk), None)
        self.by_name = {f.name: f for f, _ in columns}
        revision = quote(model._meta.get_field('cqrs_revision').column)
        updated = quote(model._meta.get_field('cqrs_updated').column)
        self.select_rows = (
            f'SELECT {self.pk_column}, {revision}, {updated} FROM {self.table} '
            f'WHERE {self.pk_column} = ANY(%s::{self.pk_cast}[]) FOR UPDATE'
        )
        self.delete_rows = f'DELETE FROM {self.table} WHERE {self.pk_column} = ANY(%s::{self.pk_cast}[])'
        names = ', '.join(quote(f.column) for f, _ in columns)
        arrays = ', '.join(f'%s::{cast}[]' for _, cast in columns)
        self.insert = (
            f'INSERT INTO {self.table} ({names}) SELECT * FROM unnest({arrays}) '
            f'ON CONFLICT ({self.pk_column}) '
        )
        self.quote = quote

    @classmethod
    def of(cls, model: Any, connection: Any) -> _SqlPlan | None:
        key = (model, connection.alias)
        if key not in cls._cache:
            cls._cache[key] = cls._build(model, connection)
        plan = cls._cache[key]
        if plan is not None and model_signals.post_init.has_listeners(model):
            return None  # instances are never made here; receivers of post_init expect them
        return plan

    @classmethod
    def _build(cls, model: Any, connection: Any) -> _SqlPlan | None:
        if connection.vendor != 'postgresql':
            return None
        opts = model._meta
        if opts.parents or model.__init__ is not models.Model.__init__:
            return None
        columns: list[tuple[Any, str]] = []
        for f in opts.concrete_fields:
            if getattr(f, 'generated', False) or f.is_relation or f.has_db_default():
                return None
            if type(f).pre_save not in _PLAIN_PRE_SAVE or getattr(f, 'auto_now', False):
                return None
            if getattr(f, 'auto_now_add', False):
                return None
            cast = _array_type(f, connection)
            if cast is None:
                return None
            columns.append((f, cast))
        quote = connection.ops.quote_name
        if any('%' in quote(name) for name in [opts.db_table, *(f.column for f, _ in columns)]):
            return None  # would be read as a placeholder
        if not any(f is opts.pk for f, _ in columns):
            return None
        return cls(model, columns, connection)

    def upsert(
        self, update: frozenset[str], rows: list[dict[str, Any]], connection: Any
    ) -> tuple[str, list[Any]]:
        """``INSERT ... SELECT * FROM unnest(...) ON CONFLICT``: every concrete column, as
        ``bulk_create`` inserts it (a missing field gets its default), updating ``update`` on conflict."""
        arrays: list[Any] = []
        for f, _ in self.columns:
            prep = f.get_db_prep_save
            name = f.name
            if all(name in row for row in rows):
                raw = [row[name] for row in rows]
            else:
                raw = [row[name] if name in row else f.get_default() for row in rows]
            same = _UNCHANGED_BY_PREP.get(type(f), ())  # the prepared value is the value itself
            arrays.append(_array_param([v if type(v) in same else prep(v, connection) for v in raw]))
        if update:
            assignments = ', '.join(
                f'{self.quote(c)} = EXCLUDED.{self.quote(c)}'
                for c in sorted(self.by_name[n].column for n in update)
            )
            return f'{self.insert}DO UPDATE SET {assignments}', arrays
        return f'{self.insert}DO NOTHING', arrays


#: Field classes whose ``get_db_prep_save`` returns a value of these types as it is (checked by type,
#: so subclasses with their own preparation are prepared by Django).
_UNCHANGED_BY_PREP: dict[type, tuple[type, ...]] = {
    **dict.fromkeys(
        (
            models.IntegerField,
            models.BigIntegerField,
            models.SmallIntegerField,
            models.PositiveIntegerField,
            models.PositiveBigIntegerField,
            models.PositiveSmallIntegerField,
            models.AutoField,
            models.BigAutoField,
            models.SmallAutoField,
        ),
        (int,),
    ),
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
}


def _quote_text(value: str) -> str:
    return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


def _float_text(value: float) -> str:
    if value != value:
        return 'NaN'
    if value in (math.inf, -math.inf):
        return 'Infinity' if value > 0 else '-Infinity'
    return repr(value)


_ELEMENT_TEXT: dict[type, Any] = {
    type(None): lambda v: 'NULL',
    str: _quote_text,
    int: str,
    bool: lambda v: 't' if v else 'f',
    float: _float_text,
    decimal.Decimal: str,
    uuid.UUID: str,
    dt.datetime: lambda v: '"' + v.isoformat() + '"',
    dt.date: dt.date.isoformat,
    dt.time: lambda v: '"' + v.isoformat() + '"',
}


def _array_param(values: list[Any]) -> Any:
    """An array parameter as one PostgreSQL array literal (``{1,2,NULL}``): the driver binds one
    string instead of adapting every element. Elements of other types: the list, for the driver."""
    parts: list[str] = []
    append = parts.append
    for value in values:
        text = _ELEMENT_TEXT.get(type(value))
        if text is None:
            if isinstance(value, int) and not isinstance(value, bool):  # psycopg's Int4, Int8...
                append(str(int(value)))
                continue
            return values
        append(text(value))
    return '{' + ','.join(parts) + '}'


def _tombstone_upsert(changed: list[Any], connection: Any) -> tuple[str, list[Any]]:
    opts = tombstones.ReplicaTombstone._meta
    updated = opts.get_field('cqrs_updated')
    deleted_at = opts.get_field('deleted_at')
    return _UPSERT_TOMBSTONES, [
        changed[0].cqrs_id,
        deleted_at.get_db_prep_save(timezone.now(), connection),
        _array_param([t.pk_value for t in changed]),
        _array_param([t.cqrs_revision for t in changed]),
        _array_param([updated.get_db_prep_save(t.cqrs_updated, connection) for t in changed]),
    ]


def _multi_statement(connection: Any) -> bool:
    """Whether several statements can go in one ``execute`` with their results read one after the
    other: psycopg 3 with client-side binding (Django's default)."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    options = connection.settings_dict.get('OPTIONS') or {}
    return bool(is_psycopg3) and not options.get('server_side_binding')


def _execute(
    connection: Any, statements: list[tuple[str, list[Any]]], fetch: tuple[int, ...] = ()
) -> dict[int, list[Any]]:
    """Run ``statements`` in order (in one round trip where possible); return the rows of those in
    ``fetch``, by position."""
    results: dict[int, list[Any]] = {}
    with connection.cursor() as cursor:
        if len(statements) > 1 and _multi_statement(connection):
            cursor.execute(
                ';\n'.join(sql for sql, _ in statements), [p for _, params in statements for p in params]
            )
            for i in range(len(statements)):
                if i:
                    cursor.nextset()
                if i in fetch:
                    results[i] = cursor.fetchall()
        else:
            for i, (sql, params) in enumerate(statements):
                cursor.execute(sql, params)
                if i in fetch:
                    results[i] = cursor.fetchall()
    return results
