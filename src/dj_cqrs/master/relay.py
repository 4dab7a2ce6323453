"""The outbox relay: publishes the events that the fast path could not deliver.

Rows are claimed in id order with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has
it, so several relays (and the fast path's catch-up) can run at once without publishing a row
twice at the same time. A batch stops at the first event the broker does not confirm, so the
events of an object leave in commit order; confirmed rows are deleted in one statement.

SAVE and SYNC rows are serialized from the row as it is now in the database (late
serialization); a row that no longer exists is skipped, since its DELETE row follows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from dj_cqrs.constants import TRACKED_FIELDS_ATTR_NAME, SignalType
from dj_cqrs.core import codec
from dj_cqrs.master.outbox import OutboxEvent, backlog
from dj_cqrs.payload import TransportPayload, get_message_expiration_dt
from dj_cqrs.registry import MasterRegistry

logger = logging.getLogger('django-cqrs')

#: The fast path leaves rows younger than this to itself (they are being published right now).
GRACE_SECONDS = 10.0
CATCH_UP_INTERVAL = 5.0
CATCH_UP_LIMIT = 100
CONFIRM_TIMEOUT = 30.0


@dataclass
class RelayResult:
    claimed: int = 0
    published: int = 0
    skipped: int = 0
    failed: int = 0


def drain(using: str = 'default', limit: int = 500, min_age: float = 0.0) -> RelayResult:
    """Publish up to ``limit`` outbox rows older than ``min_age`` seconds, in id order."""
    result = RelayResult()
    features = connections[using].features
    with transaction.atomic(using=using):
        rows_qs = OutboxEvent.objects.using(using).order_by('id')
        if min_age > 0:
            rows_qs = rows_qs.filter(created_at__lte=timezone.now() - timedelta(seconds=min_age))
        if features.has_select_for_update_skip_locked:
            rows_qs = rows_qs.select_for_update(skip_locked=True)
        elif features.has_select_for_update:
            rows_qs = rows_qs.select_for_update()
        rows = list(rows_qs[:limit])
        result.claimed = len(rows)
        if not rows:
            return result
        instances = _load_instances(rows, using)
        confirms = _Confirms()
        done: list[int] = []
        for row in rows:
            try:
                payload = _payload_for(row, using, instances)
            except Exception:
                logger.exception('CQRS outbox row %s could not be serialized; it stays.', row.id)
                result.failed += 1
                break
            if payload is None:
                done.append(row.id)
                result.skipped += 1
                continue
            outcome = confirms.produce(row.id, payload)
            if outcome is False:
                result.failed += 1
                break
            if outcome is True:
                done.append(row.id)
        # Asynchronous transports confirm the whole batch in one pipeline; wait for it here.
        confirmed, unconfirmed = confirms.wait(CONFIRM_TIMEOUT)
        done += confirmed
        result.failed += unconfirmed
        result.published = len(done) - result.skipped
        if done:
            OutboxEvent.objects.using(using).filter(id__in=done).delete()
    return result


class _Confirms:
    """Publishes a batch through ``producer.produce`` with a delivery ticket per event, so a
    transport that confirms asynchronously pipelines the whole batch."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending = 0
        self._confirmed: list[int] = []
        self._failed = 0

    def produce(self, row_id: int, payload: TransportPayload) -> bool | None:
        """True: delivered now; False: failed now; None: accepted, the answer comes later."""
        from dj_cqrs.controller import producer

        ticket = producer.DeliveryTicket(lambda delivered: self._settle(row_id, delivered))
        token = producer.current_ticket.set(ticket)
        try:
            result = producer.produce(payload)
        except Exception:
            logger.exception(
                "CQRS couldn't be published by the relay: pk = %s (%s).", payload.pk, payload.cqrs_id
            )
            return False
        finally:
            producer.current_ticket.reset(token)
        if ticket.accepted:
            with self._lock:
                self._pending += 1
            return None
        return result is not False

    def _settle(self, row_id: int, delivered: bool) -> None:
        with self._lock:
            self._pending -= 1
            if delivered:
                self._confirmed.append(row_id)
            else:
                self._failed += 1
            self._lock.notify_all()

    def wait(self, timeout: float) -> tuple[list[int], int]:
        """The ids confirmed, and how many were not (failed, or no answer in time)."""
        with self._lock:
            self._lock.wait_for(lambda: self._pending <= 0, timeout)
            return list(self._confirmed), self._failed + max(self._pending, 0)


def _load_instances(rows: list[OutboxEvent], using: str) -> dict[tuple[str, str], Any]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.signal_type != SignalType.DELETE:
            wanted[row.cqrs_id].add(row.instance_pk)
    loaded: dict[tuple[str, str], Any] = {}
    for cqrs_id, pks in wanted.items():
        model = MasterRegistry.find(cqrs_id)
        if model is None:
            continue
        queryset = model.relate_cqrs_serialization(model._default_manager.using(using))
        for instance in queryset.filter(pk__in=list(pks)):
            loaded[(cqrs_id, str(codec.json_value(instance.pk)))] = instance
    return loaded


def _payload_for(
    row: OutboxEvent, using: str, instances: dict[tuple[str, str], Any]
) -> TransportPayload | None:
    if row.signal_type == SignalType.DELETE:
        return TransportPayload.from_wire(codec.decode(row.body or ''))
    instance = instances.get((row.cqrs_id, row.instance_pk))
    if instance is None:
        return None
    previous = codec.loads(row.previous_data) if row.previous_data else None
    setattr(instance, TRACKED_FIELDS_ATTR_NAME, previous)
    # sync=True serializes the instance just loaded (with its relations), without a query per row.
    instance_data = instance.to_cqrs_dict(using, sync=True)
    meta = instance.get_cqrs_meta(
        instance_data=instance_data, previous_data=previous, signal_type=row.signal_type
    )
    return TransportPayload(
        row.signal_type,
        row.cqrs_id,
        instance_data,
        instance.pk,
        row.queue,
        previous,
        expires=get_message_expiration_dt(),
        meta=meta,
    )


def drain_all(using: str = 'default', batch: int = 500, min_age: float = 0.0) -> RelayResult:
    """Drain until the outbox is empty or the broker fails."""
    total = RelayResult()
    while True:
        step = drain(using, batch, min_age)
        total.claimed += step.claimed
        total.published += step.published
        total.skipped += step.skipped
        total.failed += step.failed
        if step.failed or step.claimed == 0:
            return total


_catch_up_lock = threading.Lock()
_next_catch_up: dict[str, float] = {}


def maybe_catch_up(using: str) -> None:
    """A bounded drain of old rows, at most every few seconds per process and database, so a
    service that runs no relay still delivers what an outage left behind."""
    now = time.monotonic()
    if now < _next_catch_up.get(using, 0.0) or not _catch_up_lock.acquire(blocking=False):
        return
    try:
        _next_catch_up[using] = now + CATCH_UP_INTERVAL
        cutoff = timezone.now() - timedelta(seconds=GRACE_SECONDS)
        if OutboxEvent.objects.using(using).filter(created_at__lte=cutoff).exists():
            result = drain(using, CATCH_UP_LIMIT, GRACE_SECONDS)
            logger.info(
                'CQRS outbox catch-up on %s: %s published, %s skipped.',
                using,
                result.published,
                result.skipped,
            )
    except Exception:
        logger.warning('CQRS outbox catch-up failed on %s.', using, exc_info=True)
    finally:
        _catch_up_lock.release()


def log_backlog(using: str, warn_age: float) -> Any:
    state = backlog(using)
    if state.oldest_age is not None and state.oldest_age > warn_age:
        logger.warning(
            'CQRS outbox backlog on %s: %s events, the oldest %.0f s old.',
            using,
            state.count,
            state.oldest_age,
        )
    else:
        logger.info('CQRS outbox backlog on %s: %s events.', using, state.count)
    return state
