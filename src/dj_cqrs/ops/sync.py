"""Filtered re-publication of master rows as SYNC events (``cqrs_sync``, UPSTREAM_SPEC §8.2).

Also the pieces every tool shares: model lookup by CQRS_ID, ``--filter`` parsing and validation,
keeping database connections usable across batches.

Rows are read in keyset-paginated batches by pk (``batch_qs``), so none is skipped or repeated and
rows added during a run are reached; each row is published from the instance just loaded, without
the per-row reload upstream's ``cqrs_sync`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import FieldError, ValidationError
from django.db import DatabaseError, connections, transaction

from dj_cqrs.management.utils import batch_qs
from dj_cqrs.master import outbox, publisher
from dj_cqrs.master.serialization import FRESH_ATTR
from dj_cqrs.ops.progress import Progress
from dj_cqrs.registry import MasterRegistry, ReplicaRegistry

DEFAULT_BATCH = 10000
FILTER_EXAMPLE = '--filter=\'{"id__in": [1, 2]}\' (or --filter={} for every row)'


class ToolError(Exception):
    """Bad input or state for a tool; ``str()`` is the message the command shows."""


def _known_ids(registry: Any) -> str:
    ids = sorted(registry.models)
    return ', '.join(ids) if ids else '(none)'


def master_model(cqrs_id: str) -> Any:
    model = MasterRegistry.find(cqrs_id)
    if model is None:
        raise ToolError(
            f'Wrong CQRS ID: {cqrs_id}! Master CQRS IDs of this service: {_known_ids(MasterRegistry)}.'
        )
    return model


def replica_model(cqrs_id: str, *, table: bool = False) -> Any:
    """The replica class of ``cqrs_id``; with ``table=True`` it must keep its rows in a table."""
    model = ReplicaRegistry.find(cqrs_id)
    if model is None:
        raise ToolError(
            f'Wrong CQRS ID: {cqrs_id}! Replica CQRS IDs of this service: {_known_ids(ReplicaRegistry)}.'
        )
    if table and not has_table(model):
        raise ToolError(
            f'Replica {cqrs_id} ({model.__name__}) keeps no rows in a table of its own '
            '(CQRS_NO_DB_OPERATIONS or not a concrete model), so there is nothing to compare or delete.'
        )
    return model


def has_table(model: Any) -> bool:
    meta = getattr(model, '_meta', None)
    return (
        meta is not None
        and not meta.abstract
        and not getattr(model, 'CQRS_NO_DB_OPERATIONS', False)
        and hasattr(model, 'cqrs_revision')
    )


def parse_filter(text: str | None) -> dict[str, Any] | None:
    """``--filter`` as filter kwargs; ``None`` when not given. Raises :class:`ToolError`."""
    if text is None:
        return None
    try:
        kwargs = json.loads(text)
    except ValueError as exc:
        raise ToolError(f'Bad filter kwargs! {exc}. Pass a JSON object, e.g. {FILTER_EXAMPLE}.')
    if not isinstance(kwargs, dict):
        raise ToolError(
            f'Bad filter kwargs! A JSON object is expected, not {type(kwargs).__name__}: '
            f'e.g. {FILTER_EXAMPLE}.'
        )
    return kwargs


def filtered(model: Any, kwargs: dict[str, Any]) -> Any:
    """``model``'s default-manager rows matching ``kwargs`` (unordered); bad lookups raise
    :class:`ToolError` with Django's explanation (the valid field names for an unknown one)."""
    try:
        qs = model._default_manager.filter(**kwargs).order_by()
        qs.exists()  # bad values (a string for an integer pk, ...) fail at query time on some fields
    except (FieldError, ValueError, TypeError, ValidationError) as exc:
        raise ToolError(f'Bad filter kwargs! {_message(exc)}')
    except DatabaseError as exc:
        raise ToolError(f'Bad filter kwargs! {type(exc).__name__}: {exc}'.strip())
    return qs


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return '; '.join(exc.messages)
    return str(exc)


def keep_connection_usable(using: str) -> None:
    """Drop a broken connection (database restart) so the next query reconnects; never inside a
    transaction, whose state would be lost."""
    conn = connections[using]
    if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
        conn.close()


@dataclass
class SyncReport:
    total: int = 0
    processed: int = 0
    synced: int = 0
    #: (pk, exception) of rows whose sync raised.
    failures: list[tuple[Any, BaseException]] = field(default_factory=list)
    #: pks of rows that were gone when their turn came (``cqrs_sync()`` returned False).
    vanished: list[Any] = field(default_factory=list)
    #: events the broker had not confirmed when the run ended (kept in the outbox for the relay).
    unconfirmed: int = 0


def sync_queryset(
    qs: Any,
    *,
    queue: str | None = None,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    on_failure: Callable[[Any, BaseException], None] | None = None,
    total: int | None = None,
) -> SyncReport:
    """Publish every row of ``qs`` as a SYNC (to ``queue`` only, if given).

    Rows are synced ``SYNC_CHUNK`` at a time in one transaction (one multi-row INSERT and one
    commit for their outbox rows; published when it commits); a chunk whose transaction fails on
    a database error is synced again row by row, each in its own transaction, so one bad row
    fails alone.
    """
    model = qs.model
    progress = progress or Progress.disabled()
    report = SyncReport(total=qs.count() if total is None else total)
    progress.set_total(report.total)
    using = qs.db
    for page in batch_qs(qs, batch):
        keep_connection_usable(using)
        instances = list(model.relate_cqrs_serialization(page))
        for start in range(0, len(instances), SYNC_CHUNK):
            chunk = instances[start : start + SYNC_CHUNK]
            try:
                with transaction.atomic(using=using), outbox.deferred(using):
                    outcomes = [_sync_one(instance, queue) for instance in chunk]
            except DatabaseError:
                keep_connection_usable(using)
                outcomes = [_sync_one(instance, queue, alone=True) for instance in chunk]
            for instance, outcome in zip(chunk, outcomes, strict=True):
                report.processed += 1
                if outcome is True:
                    report.synced += 1
                elif outcome is False:
                    report.vanished.append(instance.pk)
                else:
                    report.failures.append((instance.pk, outcome))
                    if on_failure is not None:
                        on_failure(instance.pk, outcome)
                progress.advance()
        report.unconfirmed = wait_for_confirms()
    report.total = max(report.total, report.processed)
    progress.close()
    return report


#: Rows synced in one transaction.
SYNC_CHUNK = 500


def _sync_one(instance: Any, queue: str | None, alone: bool = False) -> bool | BaseException:
    """``instance.cqrs_sync()``: True / False (row gone), or the exception it raised. In a chunk's
    transaction a database error propagates (it fails the transaction, and the chunk is retried
    row by row); ``alone``, it is the row's outcome."""
    # Just loaded: cqrs_sync() publishes it as it is instead of reloading it.
    instance.__dict__[FRESH_ATTR] = True
    try:
        return bool(instance.cqrs_sync(queue=queue))
    except DatabaseError as exc:
        if not alone:
            raise
        keep_connection_usable(instance._state.db or 'default')
        return exc
    except Exception as exc:
        return exc


#: Seconds a tool waits for the broker to confirm what it published.
CONFIRM_TIMEOUT = 60.0


def wait_for_confirms(timeout: float | None = None) -> int:
    """Wait for the broker's confirms of the events published so far; return how many are still
    unconfirmed. A tool's process ends right after its run, and would otherwise take the events
    still in flight with it (they would wait in the outbox for ``cqrs_relay``)."""
    return publisher.wait_for_confirms(CONFIRM_TIMEOUT if timeout is None else timeout)
