"""``ReplicaManager``: applying saves and deletes with revision fencing (UPSTREAM_SPEC §2.9, §6.2–6.5).

Differences from upstream, on purpose:

* the existing row is always read with ``SELECT ... FOR UPDATE`` inside the message's
  transaction, so two workers can never let an older revision overwrite a newer one;
* a create that loses a race with another worker (IntegrityError) is retried as an update;
* deletes leave a tombstone; a later stale SAVE or SYNC does not resurrect the row;
* a SYNC older than the stored row (lower revision and not later in time) is skipped instead of
  rolling the row back.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, router, transaction

from dj_cqrs.replica import mapping, tombstones

logger = logging.getLogger('django-cqrs')

#: The last exception a handler swallowed (upstream logs DB errors and returns None); the consumer
#: hands it to ``should_retry_cqrs`` so the retry hook sees the real cause.
last_error: ContextVar[BaseException | None] = ContextVar('cqrs_last_error', default=None)

STALE = True  # truthy: a skipped stale event is acknowledged

#: Why the last event was acknowledged without being applied (for the ``event_skipped`` signal).
last_skip: ContextVar[str | None] = ContextVar('cqrs_last_skip', default=None)


ABSENT_ROW_LOCK_SQL = 'SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k'


def absent_row_lock_keys(model: Any, pks: Any) -> list[int]:
    """The advisory lock keys of (CQRS_ID, pk), sorted: every lane takes them in this order."""
    to_python = model._meta.pk.to_python
    return sorted(
        {
            int.from_bytes(
                hashlib.blake2b(f'{model.CQRS_ID}:{to_python(pk)}'.encode(), digest_size=8).digest(),
                'big',
                signed=True,
            )
            for pk in pks
        }
    )


def lock_absent_rows(model: Any, pks: Any, db: str) -> None:
    """Take transaction-scoped locks on (CQRS_ID, pk) where the database has them (PostgreSQL).

    ``SELECT ... FOR UPDATE`` locks nothing when the row does not exist, so a create and a delete
    of the same absent row could interleave and resurrect it.
    """
    connection = connections[db]
    if connection.vendor != 'postgresql':
        return
    keys = absent_row_lock_keys(model, pks)
    with connection.cursor() as cursor:  # in a fixed order, so two batches cannot deadlock
        cursor.execute(ABSENT_ROW_LOCK_SQL, [keys])


def should_apply(
    model: Any, pk: Any, mapped: dict[str, Any], old: Any, old_updated: Any, sync: bool
) -> bool | None:
    """The revision rules of an event for an existing row (UPSTREAM_SPEC §6.4, with our fixes).

    Returns True to apply, False to skip (the event is acknowledged), None for a bad revision.
    Logs exactly what upstream logs.
    """
    cqrs_id = model.CQRS_ID
    try:
        new, old = int(mapped['cqrs_revision']), int(old)
    except (TypeError, ValueError):
        logger.error(
            'Bad CQRS revision: pk = %s, cqrs_revision = %r (%s).', pk, mapped.get('cqrs_revision'), cqrs_id
        )
        return None
    if sync:
        if old > new:
            if not tombstones.is_newer(new, mapped.get('cqrs_updated'), old, old_updated):
                logger.warning(
                    'Stale CQRS sync skipped: pk = %s, cqrs_revision = new %s / existing %s (%s).',
                    pk,
                    new,
                    old,
                    cqrs_id,
                )
                last_skip.set('stale sync')
                return False
            logger.warning(
                'CQRS revision downgrade on sync: pk = %s, cqrs_revision = new %s / existing %s (%s).',
                pk,
                new,
                old,
                cqrs_id,
            )
        return True
    if old > new:
        logger.error(
            'Wrong CQRS sync order: pk = %s, cqrs_revision = new %s / existing %s (%s).',
            pk,
            new,
            old,
            cqrs_id,
        )
        last_skip.set('older revision')
        return False
    if old == new:
        logger.error('Received duplicate CQRS data: pk = %s, cqrs_revision = %s (%s).', pk, new, cqrs_id)
        if new == 0:
            logger.warning('CQRS potential creation race condition: pk = %s (%s).', pk, cqrs_id)
        last_skip.set('duplicate revision')
        return False
    if new > old + 1:
        logger.warning(
            'Lost or filtered out %s CQRS packages: pk = %s, cqrs_revision = %s (%s)',
            new - old - 1,
            pk,
            new,
            cqrs_id,
        )
    return True


def tombstone_hides(model: Any, pk: Any, mapped: dict[str, Any], tombstone: Any) -> bool:
    """Whether a delete tombstone makes a SAVE/SYNC of an absent row stale (and logs it)."""
    if tombstone is None or tombstones.is_newer(
        mapped.get('cqrs_revision'),
        mapped.get('cqrs_updated'),
        tombstone.cqrs_revision,
        tombstone.cqrs_updated,
    ):
        return False
    logger.warning(
        'CQRS event for a deleted row skipped: pk = %s, cqrs_revision = %s / deleted at %s (%s).',
        pk,
        mapped.get('cqrs_revision'),
        tombstone.cqrs_revision,
        model.CQRS_ID,
    )
    last_skip.set('deleted row')
    return True


def delete_is_stale(row_updated: Any, delete_updated: Any) -> bool:
    """A delete older in time than the stored row: the row was re-created after it."""
    row_time = tombstones.as_datetime(row_updated)
    delete_time = tombstones.as_datetime(delete_updated)
    stale = bool(row_time and delete_time and row_time > delete_time)
    if stale:
        last_skip.set('stale delete')
    return stale


class ReplicaManager(models.Manager):
    def _write_db(self) -> str:
        return router.db_for_write(self.model)

    def save_instance(
        self, master_data: Any, previous_data: Any = None, sync: bool = False, meta: Any = None
    ) -> Any:
        model = self.model
        mapped = mapping.map_save_data(model, master_data)
        if not mapped:
            return None
        mapped_previous = mapping.map_previous_data(model, previous_data) if previous_data else None
        db = self._write_db()
        pk = mapped[model._meta.pk.name]
        with transaction.atomic(using=db, savepoint=False):
            instance = self._locked_row(pk, db)
            if instance is None:
                # No row to lock: serialize with a concurrent delete or create of the same pk.
                lock_absent_rows(model, [pk], db)
                instance = self._locked_row(pk, db)
            if instance is not None:
                return self.update_instance(instance, mapped, mapped_previous, sync, meta)
            return self._create_fenced(mapped, mapped_previous, sync, meta, db)

    def _locked_row(self, pk: Any, db: str) -> Any:
        pk_name = self.model._meta.pk.name
        return (
            self.model._default_manager.db_manager(db)
            .select_for_update()
            .filter(**{pk_name: pk})
            .order_by()
            .first()
        )

    def _create_fenced(self, mapped: dict[str, Any], previous: Any, sync: bool, meta: Any, db: str) -> Any:
        model = self.model
        pk = mapped[model._meta.pk.name]
        tombstone = tombstones.find(model, pk, db)
        if tombstone_hides(model, pk, mapped, tombstone):
            return STALE
        if tombstone is not None:
            tombstone.delete()
        try:
            with transaction.atomic(using=db):
                created = self.create_instance(mapped, previous, sync, meta, _reraise_integrity=True)
        except IntegrityError:
            # Another worker created the row between our read and our insert.
            instance = self._locked_row(pk, db)
            if instance is None:
                raise
            return self.update_instance(instance, mapped, previous, sync, meta)
        return created

    def create_instance(
        self,
        mapped_data: dict[str, Any],
        previous_data: Any = None,
        sync: bool = False,
        meta: Any = None,
        _reraise_integrity: bool = False,
    ) -> Any:
        model = self.model
        kwargs: dict[str, Any] = {'previous_data': previous_data}
        if model.CQRS_META:
            kwargs['meta'] = meta
        try:
            return model.cqrs_create(sync, mapped_data, **kwargs)
        except (DatabaseError, ValidationError) as exc:
            if _reraise_integrity and isinstance(exc, IntegrityError):
                raise
            return self._failed('create', mapped_data, exc)

    def update_instance(
        self,
        instance: Any,
        mapped_data: dict[str, Any],
        previous_data: Any = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        model = self.model
        pk = instance.pk
        verdict = should_apply(model, pk, mapped_data, instance.cqrs_revision, instance.cqrs_updated, sync)
        if verdict is None:
            return None
        if not verdict:
            return instance
        new = mapped_data['cqrs_revision']
        kwargs: dict[str, Any] = {'previous_data': previous_data}
        if model.CQRS_META:
            kwargs['meta'] = meta
        try:
            return instance.cqrs_update(sync, mapped_data, **kwargs)
        except (DatabaseError, ValidationError) as exc:
            return self._failed('update', mapped_data, exc, revision=new)

    def delete_instance(self, master_data: Any) -> bool:
        model = self.model
        mapped = mapping.map_delete_data(model, master_data)
        if not mapped:
            return False
        pk = mapped[model._meta.pk.name]
        db = self._write_db()
        try:
            with transaction.atomic(using=db, savepoint=False):
                lock_absent_rows(model, [pk], db)
                instance = self._locked_row(pk, db)
                if instance is not None:
                    row_time = tombstones.as_datetime(instance.cqrs_updated)
                    delete_time = tombstones.as_datetime(mapped['cqrs_updated'])
                    if row_time and delete_time and row_time > delete_time:
                        # The row was re-created on the master after this delete happened.
                        logger.warning(
                            'Stale CQRS delete skipped: pk = %s, the row is newer (%s).', pk, model.CQRS_ID
                        )
                        return True
                    model._default_manager.db_manager(db).filter(pk=pk).delete()
                tombstones.record(model, pk, mapped['cqrs_revision'], mapped['cqrs_updated'], db)
        except DatabaseError as exc:
            logger.error('%s\nCQRS delete error: pk = %s (%s).', exc, pk, model.CQRS_ID)
            last_error.set(exc)
            return False
        return True

    def _failed(self, action: str, mapped: dict[str, Any], exc: BaseException, revision: Any = None) -> None:
        model = self.model
        if isinstance(exc, DatabaseError):
            # The handler swallowed a database error: the transaction is unusable; roll it back
            # instead of failing again with "current transaction is aborted".
            connection = transaction.get_connection(self._write_db())
            if connection.in_atomic_block:
                transaction.set_rollback(True, using=self._write_db())
        pk = mapped.get(model._meta.pk.name)
        if action == 'update':
            logger.error(
                '%s\nCQRS update error: pk = %s, cqrs_revision = %s (%s).', exc, pk, revision, model.CQRS_ID
            )
        else:
            logger.error('%s\nCQRS create error: pk = %s (%s).', exc, pk, model.CQRS_ID)
        last_error.set(exc)
