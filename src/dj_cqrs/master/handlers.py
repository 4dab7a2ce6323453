"""Signal handlers of master models (UPSTREAM_SPEC §2.5, §4.3, §4.4, §4.8).

One event per object per transaction: the first save of an object registers an on-commit publish
on the connection it was saved with; later saves in the same transaction only change what that
publish will serialize. Whether an earlier publish is still pending is read from the connection's
on-commit list itself, so a rolled-back transaction or savepoint never swallows the next save
(upstream needs ``reset_cqrs_saves_count()`` for that).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import connections, transaction
from django.db.models import signals as model_signals

from dj_cqrs import signals
from dj_cqrs.conf import cqrs_settings
from dj_cqrs.constants import SignalType
from dj_cqrs.core import codec
from dj_cqrs.master import outbox, publisher
from dj_cqrs.master.serialization import cqrs_state

PENDING_ATTR = '_cqrs_pending'
#: (alias, id, written row or None) of the outbox row written by the statement that saved the
#: instance (PostgreSQL).
OUTBOX_ID_ATTR = '_cqrs_outbox_id'

logger = logging.getLogger('django-cqrs')


def outbox_enabled(using: str) -> bool:
    if not cqrs_settings.master.outbox:
        return False
    if outbox.table_exists(using):
        return True
    if using not in _warned_missing:
        _warned_missing.add(using)
        logger.error(
            "CQRS outbox table is missing in database '%s': events are published without it until "
            'you run `manage.py migrate dj_cqrs` (system check dj_cqrs.W021).',
            using,
        )
    return False


_warned_missing: set[str] = set()


def fusable(model: Any, using: str) -> bool:
    """Whether a save of ``model`` on ``using`` writes its outbox event in the row's own statement
    (``mixins._FusedEvent``): PostgreSQL's data-modifying CTEs; one table (no multi-table
    inheritance, whose parent rows are other statements)."""
    return (
        model.CQRS_PRODUCE
        and connections[using].vendor == 'postgresql'
        and not model._meta.concrete_model._meta.parents  # (a proxy's parent is its concrete model)
        and outbox_enabled(using)
    )


def _pending_is_live(instance: Any, using: str) -> bool:
    pending = instance.__dict__.get(PENDING_ATTR)
    if pending is None:
        return False
    alias, callback = pending
    if alias != using:
        return False
    connection = connections[using]
    if not connection.in_atomic_block:
        return False
    return any(entry[1] is callback for entry in connection.run_on_commit)


def begin_save(instance: Any, using: str) -> bool:
    """Count a save of ``instance``; return whether it is the first CQRS save of its transaction."""
    if not _pending_is_live(instance, using):
        instance.__dict__.pop(PENDING_ATTR, None)
        instance._cqrs_saves_count = 0
    instance._cqrs_saves_count = getattr(instance, '_cqrs_saves_count', 0) + 1
    return instance._cqrs_saves_count == 1


class MasterSignals:
    """Signal receivers of master models."""

    @classmethod
    def register_model(cls, model_cls: Any) -> None:
        model_signals.post_save.connect(cls.post_save, sender=model_cls, weak=False)
        model_signals.post_delete.connect(cls.post_delete, sender=model_cls, weak=False)
        signals.post_bulk_create.connect(cls.post_bulk_create, sender=model_cls, weak=False)
        signals.post_update.connect(cls.post_bulk_update, sender=model_cls, weak=False)

    @classmethod
    def post_save(cls, sender: Any, **kwargs: Any) -> None:
        instance = kwargs['instance']
        fused = instance.__dict__.pop(OUTBOX_ID_ATTR, None)
        update_fields = kwargs.get('update_fields')
        if (
            not sender.CQRS_PRODUCE
            or (update_fields and 'cqrs_revision' not in update_fields)
            or not instance.is_sync_instance()
        ):
            if fused is not None:
                # Written with the row, but there is nothing to publish (rare: a hook changed its mind).
                outbox.OutboxEvent.objects.using(fused[0]).filter(id=fused[1]).delete()
            return
        using = kwargs.get('using') or instance._state.db or 'default'
        if cqrs_state.bulk_relate_cm is not None:
            cqrs_state.bulk_relate_cm.register(instance, using)

        sync = kwargs.get('sync', False)
        queue = kwargs.get('queue')
        connection = connections[using]
        if connection.in_atomic_block and _pending_is_live(instance, using) and not sync:
            # This transaction already publishes the object, with its final state (the statement
            # of this save dropped the snapshot: publisher.SnapshotWatch).
            return
        callback = publisher.PublishSave(instance, using, sync, queue, None)
        if fused is not None and fused[0] == using and not sync:
            callback.outbox_id = fused[1]
            callback.committed = fused[2]  # the row as its statement wrote it (None: read at commit)
        elif outbox_enabled(using):
            event = (instance.CQRS_ID, SignalType.SYNC if sync else SignalType.SAVE, instance.pk)
            previous_data = instance.get_tracked_fields_data()
            if not outbox.defer(using, callback, *event, queue=queue, previous_data=previous_data):
                callback.outbox_id = outbox.record(using, *event, queue=queue, previous_data=previous_data)
        if connection.in_atomic_block:
            if not sync:
                instance.__dict__[PENDING_ATTR] = (using, callback)
            if callback.reads_row():
                publisher.expect_read(callback, connection)
            if callback.committed is not None:
                publisher.SnapshotWatch.of(connection).add(callback, connection)
        transaction.on_commit(callback, using=using)

    @classmethod
    def post_delete(cls, sender: Any, **kwargs: Any) -> None:
        instance = kwargs['instance']
        if not sender.CQRS_PRODUCE or not instance.is_sync_instance():
            return
        payload = publisher.build_delete_payload(instance)
        using = kwargs.get('using') or 'default'
        outbox_id = None
        if outbox_enabled(using):
            outbox_id = outbox.record(
                using,
                payload.cqrs_id,
                SignalType.DELETE,
                payload.pk,
                body=codec.encode_fields(payload.to_dict()),
            )
        transaction.on_commit(partial(publisher.emit, payload, using, outbox_id), using=using)

    @classmethod
    def post_bulk_create(cls, sender: Any, **kwargs: Any) -> None:
        for instance in kwargs['instances']:
            cls.post_save(sender, instance=instance, using=kwargs.get('using'))

    @classmethod
    def post_bulk_update(cls, sender: Any, **kwargs: Any) -> None:
        for instance in kwargs['instances']:
            cls.post_save(sender, instance=instance, using=kwargs.get('using'))
