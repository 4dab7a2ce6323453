"""Applying a batch of received events in one transaction per database.

Two lanes, with the same revision rules and log lines as one-by-one application:

* the **bulk lane**, for models that keep every default hook (``cqrs_save`` / ``cqrs_create`` /
  ``cqrs_update`` / ``cqrs_delete``, no ``CQRS_CUSTOM_SERIALIZATION``, no save signal receivers):
  the rows of the batch are read and locked in one query, the events are folded in Python (several
  revisions of a row coalesce to the newest), and the result is written with one upsert per
  field set, one delete and the tombstone changes. If that write fails, the model's events go
  through the other lane;
* the **hook lane**, for everything else: each event is applied through
  ``dj_cqrs.controller.consumer.consume`` (the upstream seam) inside its own savepoint, so one
  failing event does not fail its batch and every hook sees every event.

Nothing is acknowledged here: the consumer acks after the transactions commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, models, transaction
from django.db.models import signals as model_signals

from dj_cqrs.constants import SignalType
from dj_cqrs.log_context import event_context
from dj_cqrs.replica import mapping, tombstones
from dj_cqrs.replica.dispatch import apply_query_timeouts, keep_connections_usable, replica_db
from dj_cqrs.replica.managers import (
    ReplicaManager,
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


def apply_batch(items: Sequence[Item]) -> None:
    """Apply ``items`` (in order per row) and commit. On a failed commit every item fails."""
    dbs = sorted({replica_db(item.model) for item in items if not item.model.CQRS_NO_DB_OPERATIONS})
    if dbs:
        keep_connections_usable()
        for model in {item.model for item in items if not item.model.CQRS_NO_DB_OPERATIONS}:
            apply_query_timeouts(model)
    try:
        with ExitStack() as stack:
            for db in dbs:
                stack.enter_context(transaction.atomic(using=db))
            _apply(items)
    except DatabaseError as exc:
        logger.error('%s\nCQRS batch of %s events failed to commit.', exc, len(items))
        for item in items:
            item.result, item.error = None, exc


def _apply(items: Sequence[Item]) -> None:
    bulk: dict[Any, list[Item]] = {}
    for item in items:
        if _bulk_eligible(item.model):
            bulk.setdefault(item.model, []).append(item)
    done: set[int] = set()
    for model, group in bulk.items():
        db = replica_db(model)
        try:
            with transaction.atomic(using=db):
                _BulkLane(model, db, group).run()
            done.update(id(item) for item in group)
        except (DatabaseError, ValueError, TypeError) as exc:
            logger.warning(
                'CQRS bulk apply of %s events failed (%s); applying one by one.', model.CQRS_ID, exc
            )
            for item in group:
                item.result, item.error = None, None
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

    def run(self) -> None:
        prepared = [(item, self._map(item)) for item in self.items]
        pks = {mapped[self.pk_name] for _, mapped in prepared if mapped}
        rows = self._load(pks)
        for item, mapped in prepared:
            if mapped is None:
                item.result = None  # mapping failed (logged by mapping.py)
                continue
            token = last_skip.set(None)
            with event_context(item.payload):
                item.result = self._fold(
                    item.payload.signal_type, mapped, rows[self._key(mapped[self.pk_name])]
                )
            item.skipped = last_skip.get() if item.result else None
            last_skip.reset(token)
        self._write(rows)

    def _map(self, item: Item) -> dict[str, Any] | None:
        data = item.payload.instance_data
        if item.payload.signal_type == SignalType.DELETE:
            return mapping.map_delete_data(self.model, data)
        return mapping.map_save_data(self.model, data)

    def _key(self, pk: Any) -> str:
        return str(self.model._meta.pk.to_python(pk))

    def _load(self, pks: set[Any]) -> dict[str, _Row]:
        rows: dict[str, _Row] = {}
        for pk, revision, updated in self._locked(pks):
            rows[self._key(pk)] = _Row(True, revision, updated)
        absent = [pk for pk in pks if self._key(pk) not in rows]
        if absent:
            lock_absent_rows(self.model, absent, self.db)
            # Another worker may have created some of them while we waited for the lock: read
            # again, or our "create" would overwrite its newer row without a revision check.
            for pk, revision, updated in self._locked(absent):
                rows[self._key(pk)] = _Row(True, revision, updated)
            absent = [pk for pk in absent if self._key(pk) not in rows]
        if absent:
            keys = [self._key(pk) for pk in absent]
            found = {
                t.pk_value: t
                for t in tombstones.ReplicaTombstone.objects.using(self.db)
                .select_for_update()
                .filter(cqrs_id=self.model.CQRS_ID, pk_value__in=keys)
            }
            for key in keys:
                rows[key] = _Row(False, tombstone=found.get(key))
        return rows

    def _locked(self, pks: Any) -> Any:
        return (
            self.manager.select_for_update()
            .filter(pk__in=list(pks))
            .values_list('pk', 'cqrs_revision', 'cqrs_updated')
        )

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
                row.tombstone = tombstones.ReplicaTombstone(
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

    def _write(self, rows: dict[str, _Row]) -> None:
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


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
