"""Turns committed master changes into payloads and hands them to the producer.

Every event leaves through ``dj_cqrs.controller.producer.produce``, looked up at call time,
because users' test suites patch that function.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from dj_cqrs.constants import SignalType
from dj_cqrs.log_context import event_context
from dj_cqrs.master import outbox
from dj_cqrs.master.serialization import COMMITTED_ATTR, FRESH_ATTR, GONE, read_committed
from dj_cqrs.payload import TransportPayload, get_message_expiration_dt

logger = logging.getLogger('django-cqrs')


def build_save_payload(
    instance: Any, using: str | None, sync: bool = False, queue: str | None = None
) -> TransportPayload:
    instance_data = instance.to_cqrs_dict(using, sync=sync)
    previous_data = instance.get_tracked_fields_data()
    signal_type = SignalType.SYNC if sync else SignalType.SAVE
    meta = instance.get_cqrs_meta(
        instance_data=instance_data, previous_data=previous_data, signal_type=signal_type
    )
    return TransportPayload(
        signal_type,
        instance.CQRS_ID,
        instance_data,
        instance.pk,
        queue,
        previous_data,
        expires=get_message_expiration_dt(),
        meta=meta,
    )


def build_delete_payload(instance: Any) -> TransportPayload:
    revision = instance.cqrs_revision
    instance_data: dict[str, Any] = {
        'id': instance.pk,
        'cqrs_revision': (revision if isinstance(revision, int) else 0) + 1,
        'cqrs_updated': str(timezone.now()),
    }
    custom = instance.get_custom_cqrs_delete_data()
    if custom:
        instance_data['custom'] = custom
    meta = instance.get_cqrs_meta(instance_data=instance_data, signal_type=SignalType.DELETE)
    return TransportPayload(
        SignalType.DELETE,
        instance.CQRS_ID,
        instance_data,
        instance.pk,
        expires=get_message_expiration_dt(),
        meta=meta,
    )


class PublishSave:
    """The on-commit callback of one SAVE / SYNC event.

    The first one of a transaction to run reads the committed rows of every pending save of its
    model at once (one query instead of one per event); see :func:`expect_read`.
    """

    __slots__ = ('committed', 'instance', 'outbox_id', 'queue', 'sync', 'using')

    def __init__(
        self, instance: Any, using: str, sync: bool, queue: str | None, outbox_id: int | None
    ) -> None:
        self.instance, self.using, self.sync, self.queue = instance, using, sync, queue
        self.outbox_id = outbox_id
        self.committed: Any = None

    def reads_row(self) -> bool:
        """Whether serializing this event reads the committed row (default serialization)."""
        instance = self.instance
        return not (self.sync or instance.CQRS_SERIALIZER or instance.__dict__.get(FRESH_ATTR))

    def __call__(self) -> None:
        if self.committed is None and self.reads_row():
            _read_together(self)
        else:
            SnapshotWatch.settle(self.using)
        instance = self.instance
        if self.committed is not None:
            instance.__dict__[COMMITTED_ATTR] = self.committed
        try:
            publish_save(instance, self.using, self.sync, self.queue, self.outbox_id)
        finally:
            instance.__dict__.pop(COMMITTED_ATTR, None)


class _Expected(threading.local):
    def __init__(self) -> None:
        self.by_alias: dict[str, list[PublishSave]] = {}


_expected = _Expected()

#: At most this many rows are read by one query.
READ_BATCH = 1000


def expect_read(callback: PublishSave, connection: Any) -> None:
    """Note a callback registered in an atomic block on ``connection`` that will read its row."""
    pending = _expected.by_alias.setdefault(callback.using, [])
    if not connection.run_on_commit:
        # Nothing is registered on the connection: the notes are of transactions that ended
        # (committed, or rolled back, whose callbacks never run).
        pending.clear()
    pending.append(callback)


#: Set in an execute wrapper's context by the statement that writes a saved row and its event.
FUSED_CONTEXT_KEY = 'cqrs_fused'
#: Statements that write no row: they keep the snapshots.
_WRITES_NOTHING = ('SELECT', 'SAVEPOINT', 'RELEASE SAVEPOINT', 'ROLLBACK TO SAVEPOINT')


class SnapshotWatch:
    """An execute wrapper kept on a connection: the rows saved in its open transaction, as their
    statements wrote and returned them, are what their events carry, until any other statement
    that may write (not a SELECT, a savepoint, or the fused statement of another save) runs in the
    same transaction. Then the events read their rows after the commit, as without a snapshot.

    A wrapper for the life of the connection: it is first in ``execute_wrappers``, so the
    ``execute_wrapper()`` blocks of other code, which remove the last one, never remove it.
    """

    ATTR = '_cqrs_snapshot_watch'

    def __init__(self) -> None:
        self.callbacks: list[PublishSave] = []

    @classmethod
    def of(cls, connection: Any) -> SnapshotWatch:
        watch = connection.__dict__.get(cls.ATTR)
        if watch is None:
            watch = connection.__dict__[cls.ATTR] = cls()
            connection.execute_wrappers.insert(0, watch)
        return watch

    @classmethod
    def settle(cls, using: str) -> None:
        """The transaction committed: its snapshots are final."""
        from django.db import connections

        watch = connections[using].__dict__.get(cls.ATTR)
        if watch is not None:
            watch.callbacks.clear()

    def add(self, callback: PublishSave, connection: Any) -> None:
        """Watch ``callback``'s snapshot (before it is registered on ``connection``)."""
        if not connection.run_on_commit:
            self.callbacks.clear()  # of transactions that ended (as in expect_read)
        self.callbacks.append(callback)

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        if self.callbacks and not context.get(FUSED_CONTEXT_KEY) and not sql.startswith(_WRITES_NOTHING):
            for callback in self.callbacks:
                callback.committed = None
            self.callbacks.clear()
        return result


def _read_together(callback: PublishSave) -> None:
    model = type(callback.instance)
    pending = _expected.by_alias.get(callback.using, [])
    group = [callback]
    for other in pending:
        if len(group) >= READ_BATCH:
            break
        if other is not callback and type(other.instance) is model and other.committed is None:
            group.append(other)
    taken = {id(c) for c in group}
    pending[:] = [c for c in pending if id(c) not in taken]
    try:
        rows = read_committed(model, callback.using, [c.instance.pk for c in group])
    except Exception:
        return  # each event reads (and reports) on its own
    to_key = model._meta.pk.to_python
    for c in group:
        c.committed = rows.get(to_key(c.instance.pk), GONE)


def publish_save(
    instance: Any, using: str, sync: bool = False, queue: str | None = None, outbox_id: int | None = None
) -> None:
    """Serialize ``instance`` now (it is committed) and publish it."""
    instance.reset_cqrs_saves_count()
    instance.__dict__.pop('_cqrs_pending', None)
    try:
        payload = build_save_payload(instance, using, sync=sync, queue=queue)
    except ObjectDoesNotExist:
        logger.error(
            "Can't produce message from master model '%s': The instance doesn't exist (pk=%s)",
            type(instance).__name__,
            instance.pk,
        )
        if outbox_id is not None:
            outbox.delivered.add(using, [outbox_id])  # the row is gone: its DELETE event has its own row
        return
    except Exception:
        # A broken serializer must not stop the other events of the transaction (upstream lets
        # it escape from on_commit, which skips every later callback). An outbox row stays.
        logger.exception("CQRS couldn't be serialized: pk = %s (%s).", instance.pk, instance.CQRS_ID)
        return
    emit(payload, using, outbox_id)


#: While the broker is failing, the fast path leaves events to the relay instead of making every
#: committing request wait for a publish timeout.
BREAKER_SECONDS = 5.0
_breaker = {'open_until': 0.0}


def emit(payload: TransportPayload, using: str = 'default', outbox_id: int | None = None) -> bool:
    """Publish through ``producer.produce``; return whether the event was delivered (or, for an
    outbox event handed to an asynchronous transport, accepted: its row is removed on confirm)."""
    from dj_cqrs.controller import producer

    if outbox_id is not None and time.monotonic() < _breaker['open_until']:
        return False
    ticket = token = None
    if outbox_id is not None:
        ticket = producer.DeliveryTicket(functools.partial(_ticket_settled, payload, using, outbox_id))
        token = producer.current_ticket.set(ticket)
    try:
        with event_context(payload):
            result = producer.produce(payload)
    except Exception:
        logger.exception("CQRS couldn't be published: pk = %s (%s).", payload.pk, payload.cqrs_id)
        result = False
    finally:
        if token is not None:
            producer.current_ticket.reset(token)
    if ticket is not None and ticket.accepted:
        in_flight.add(1)
        _drain_at_exit()
        _catch_up(using)
        return True
    if outbox_id is not None:
        # A synchronous transport (or a patched produce): keep the row on failure, trip nothing.
        _settled(payload, using, outbox_id, result is not False)
        if result is not False:
            _catch_up(using)
    return result is not False


class _InFlight:
    """How many events an asynchronous transport accepted and has not confirmed (or failed) yet."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self, n: int) -> None:
        # A confirm may arrive (I/O thread) before the publisher counts its event: the count can
        # dip below zero for a moment.
        with self._changed:
            self._count += n
            self._changed.notify_all()

    def wait(self, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._count <= 0, timeout)
            return max(self._count, 0)


in_flight = _InFlight()


def wait_for_confirms(timeout: float = 30.0, quiet: bool = False) -> int:
    """Wait until the broker answered for every event handed to an asynchronous transport, and
    delete the delivered outbox rows now; return how many events are still unconfirmed (their
    rows stay in the outbox for the relay). For short-lived processes (management commands),
    whose daemon I/O thread would otherwise die with them."""
    pending = in_flight.wait(timeout)
    outbox.delivered.flush(quiet=quiet)
    return pending


#: Seconds a process that is exiting waits for the confirms of its last events.
EXIT_DRAIN_SECONDS = 10.0
_exit_hook = {'registered': False}


def _drain_at_exit() -> None:
    # The transport's I/O thread is a daemon: without this, a short-lived process (a management
    # command, a script) would exit with its last events unpublished, waiting in the outbox for
    # the relay. atexit runs before daemon threads stop.
    if not _exit_hook['registered']:
        _exit_hook['registered'] = True
        # quiet: at exit the database may be gone (a test run drops it); rows left are redelivered.
        atexit.register(wait_for_confirms, EXIT_DRAIN_SECONDS, True)


def _ticket_settled(payload: TransportPayload, using: str, outbox_id: int, delivered: bool) -> None:
    try:
        _settled(payload, using, outbox_id, delivered, trip=True)
    finally:
        in_flight.add(-1)


def _settled(
    payload: TransportPayload, using: str, outbox_id: int, delivered: bool, trip: bool = False
) -> None:
    """The broker's answer for an outbox event (possibly called from a transport's I/O thread).

    Only a broker that did not confirm (``trip``) opens the breaker; an exception of a patched
    ``produce`` in a test suite must not silence the following events.
    """
    if delivered:
        if trip:
            _breaker['open_until'] = 0.0
        outbox.delivered.add(using, [outbox_id])
        return
    if trip:
        _breaker['open_until'] = time.monotonic() + BREAKER_SECONDS
    logger.warning(
        'CQRS event kept in the outbox for the relay: pk = %s (%s), outbox id = %s.',
        payload.pk,
        payload.cqrs_id,
        outbox_id,
    )


def _catch_up(using: str) -> None:
    if time.monotonic() >= _breaker['open_until']:
        from dj_cqrs.master import relay

        relay.maybe_catch_up(using)
