"""The state of the pipeline, as ``manage.py cqrs_status`` shows it.

Master side: the outbox backlog (undelivered events and the age of the oldest) of every database
that has the outbox table. Replica side: the replica queue (ready messages, consumers), the
dead-letter queue, the delay queues retries wait in, and per ``CQRS_ID`` the rows held, the newest
change applied (the greatest ``cqrs_updated``, which is the master's time of that change) and the
last delete applied (from the delete tombstones).

Nothing here raises for an unreachable broker or database: the problem is put in the report
(``error`` fields) so that one broken piece does not hide the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Max
from django.utils import timezone

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.core.routing import delay_queue_name
from dj_cqrs.registry import MasterRegistry, ReplicaRegistry

logger = logging.getLogger('django-cqrs')

#: Retry counts probed for the delays of ``get_cqrs_retry_delay`` (one delay queue per delay).
MAX_PROBED_RETRIES = 30
MAX_DELAY_QUEUES = 20


@dataclass
class OutboxStatus:
    database: str
    count: int | None = None
    oldest_age: float | None = None  # seconds
    #: the oldest event is older than ``CQRS['master']['CQRS_OUTBOX_WARN_AGE']``
    stale: bool = False
    error: str | None = None


@dataclass
class MasterStatus:
    cqrs_ids: list[str]
    outbox_enabled: bool
    warn_age: int
    outboxes: list[OutboxStatus] = field(default_factory=list)

    @property
    def backlog(self) -> int:
        return sum(o.count or 0 for o in self.outboxes)


@dataclass
class QueueStatus:
    name: str
    messages: int | None = None
    #: None when the broker cannot tell (see :func:`queue_consumers`)
    consumers: int | None = None
    delay_ms: int | None = None


@dataclass
class ModelStatus:
    cqrs_id: str
    model: str
    database: str | None = None
    rows: int | None = None
    #: the newest ``cqrs_updated`` among the rows: the master's time of the last change applied
    last_updated: dt.datetime | None = None
    last_revision: int | None = None
    last_pk: Any = None
    deletes: int | None = None
    last_deleted_at: dt.datetime | None = None
    error: str | None = None


@dataclass
class ReplicaStatus:
    transport: str | None
    queue: str | None
    queue_status: QueueStatus | None = None
    dead_letters: QueueStatus | None = None
    delay_queues: list[QueueStatus] = field(default_factory=list)
    models: list[ModelStatus] = field(default_factory=list)
    error: str | None = None


@dataclass
class Status:
    master: MasterStatus | None = None
    replica: ReplicaStatus | None = None
    checked_at: dt.datetime = field(default_factory=timezone.now)

    @property
    def errors(self) -> list[str]:
        found: list[str] = []
        if self.master is not None:
            found += [f'outbox {o.database}: {o.error}' for o in self.master.outboxes if o.error]
        if self.replica is not None:
            if self.replica.error:
                found.append(f'broker: {self.replica.error}')
            found += [f'{m.cqrs_id}: {m.error}' for m in self.replica.models if m.error]
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (datetimes as ISO-8601 strings)."""
        data = _jsonable(asdict(self))
        if self.master is not None:
            data['master']['backlog'] = self.master.backlog
        return data  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _error_text(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}'.strip()


# -- master ---------------------------------------------------------------------------------------
def outbox_status(using: str) -> OutboxStatus | None:
    """The backlog of the outbox on ``using``; ``None`` if that database has no outbox table."""
    from dj_cqrs.master.outbox import OutboxEvent, backlog

    try:
        if OutboxEvent._meta.db_table not in connections[using].introspection.table_names():
            return None
        state = backlog(using)
    except Exception as exc:  # a database that is down must not hide the others
        return OutboxStatus(using, error=_error_text(exc))
    warn_age = cqrs_settings.master.outbox_warn_age
    stale = state.oldest_age is not None and state.oldest_age > warn_age
    return OutboxStatus(using, count=state.count, oldest_age=state.oldest_age, stale=stale)


def master_status(databases: Sequence[str] | None = None) -> MasterStatus:
    aliases = list(databases) if databases else list(settings.DATABASES)
    result = MasterStatus(
        cqrs_ids=sorted(MasterRegistry.models),
        outbox_enabled=cqrs_settings.master.outbox,
        warn_age=cqrs_settings.master.outbox_warn_age,
    )
    for alias in aliases:
        status = outbox_status(alias)
        if status is not None:
            result.outboxes.append(status)
    return result


# -- replica --------------------------------------------------------------------------------------
def queue_consumers(broker: Any, queue: str) -> int | None:
    """Consumers of ``queue``, or ``None`` where the broker cannot tell.

    Uses ``broker.consumer_count(queue)`` when the broker has it, else asks RabbitMQ (and Kombu on
    AMQP) with a passive declare on a short-lived connection of its own.
    """
    method = getattr(broker, 'consumer_count', None)
    if callable(method):
        return method(queue)  # type: ignore[no-any-return]
    try:
        from dj_cqrs.transport.rabbitmq import RabbitMQBroker
    except ImportError:  # pragma: no cover - pika is a dependency
        RabbitMQBroker = None  # type: ignore[assignment,misc]
    if RabbitMQBroker is not None and isinstance(broker, RabbitMQBroker):
        return _rabbitmq_consumers(broker, queue)
    if getattr(broker, 'is_amqp', False) and hasattr(broker, 'connection'):
        return _kombu_amqp_consumers(broker, queue)
    return None


def _rabbitmq_consumers(broker: Any, queue: str) -> int | None:
    import pika

    conn = pika.BlockingConnection(broker.connection_parameters('status'))
    try:
        channel = conn.channel()
        try:
            method: Any = channel.queue_declare(queue, passive=True).method
            return int(method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
    finally:
        if conn.is_open:
            conn.close()


def _kombu_amqp_consumers(broker: Any, queue: str) -> int | None:
    from kombu import Queue

    try:
        with broker.connection() as conn:
            return int(Queue(queue)(conn.default_channel).queue_declare(passive=True).consumer_count)
    except Exception as exc:
        if '404' in str(exc) or 'NOT_FOUND' in str(exc):
            return 0
        raise


def retry_delays(models: Iterable[Any]) -> list[int]:
    """The delays (ms) the replica models' ``get_cqrs_retry_delay`` hooks can return, ascending."""
    max_retries = cqrs_settings.replica.max_retries
    probes = MAX_PROBED_RETRIES if max_retries is None else min(max_retries, MAX_PROBED_RETRIES)
    delays: set[int] = set()
    for model in models:
        hook = getattr(model, 'get_cqrs_retry_delay', None)
        if hook is None:
            continue
        for retries in range(probes):
            try:
                seconds = float(hook(retries) or 0)
            except Exception:
                break
            if seconds > 0:
                delays.add(int(seconds * 1000))
            if len(delays) >= MAX_DELAY_QUEUES:
                break
    return sorted(delays)


def model_status(model: Any) -> ModelStatus:
    from dj_cqrs.replica.dispatch import replica_db
    from dj_cqrs.replica.tombstones import ReplicaTombstone

    label = f'{model.__module__}.{model.__qualname__}'
    status = ModelStatus(model.CQRS_ID, label)
    if getattr(model, 'CQRS_NO_DB_OPERATIONS', True) or not hasattr(model, '_meta'):
        return status  # stores its data elsewhere: nothing to count
    db = replica_db(model)
    status.database = db
    try:
        rows = model._default_manager.using(db)
        status.rows = rows.count()
        newest = (
            rows.order_by('-cqrs_updated', '-pk').values_list('pk', 'cqrs_revision', 'cqrs_updated').first()
        )
        if newest is not None:
            status.last_pk, status.last_revision, status.last_updated = newest
        deletes = ReplicaTombstone.objects.using(db).filter(cqrs_id=model.CQRS_ID)
        aggregate = deletes.aggregate(n=Count('pk'), last=Max('deleted_at'))
        status.deletes, status.last_deleted_at = aggregate['n'], aggregate['last']
    except Exception as exc:
        status.error = _error_text(exc)
    return status


def replica_status(cqrs_ids: Sequence[str] | None = None, *, broker_stats: bool = True) -> ReplicaStatus:
    from dj_cqrs.transport import get_transport

    transport = get_transport()
    models = [
        model
        for cqrs_id, model in sorted(ReplicaRegistry.models.items())
        if not cqrs_ids or cqrs_id in cqrs_ids
    ]
    name = f'{transport.__module__}.{transport.__qualname__}' if transport is not None else None
    result = ReplicaStatus(transport=name, queue=cqrs_settings.queue)
    result.models = [model_status(model) for model in models]
    if broker_stats:
        _broker_side(result, transport, models)
    return result


def _broker_side(result: ReplicaStatus, transport: Any, models: list[Any]) -> None:
    from dj_cqrs.transport.bridge import BrokerTransport

    if not (isinstance(transport, type) and issubclass(transport, BrokerTransport)):
        result.error = (
            f'{result.transport or "no transport"} has no broker to ask: queue statistics need one '
            'of the transports of dj_cqrs (RabbitMQTransport, KombuTransport, MemoryTransport).'
        )
        return
    queue = cqrs_settings.queue or 'None'
    try:
        broker = transport.broker()
        result.queue_status = QueueStatus(queue, broker.queue_size(queue), _consumers(broker, queue))
        dlq = cqrs_settings.replica.dead_letter_queue
        result.dead_letters = QueueStatus(dlq, broker.queue_size(dlq))
        if broker.capabilities.delay_queues:
            for delay_ms in retry_delays(models):
                name = delay_queue_name(queue, delay_ms)
                result.delay_queues.append(QueueStatus(name, broker.queue_size(name), delay_ms=delay_ms))
    except Exception as exc:
        result.error = _error_text(exc)


def _consumers(broker: Any, queue: str) -> int | None:
    try:
        return queue_consumers(broker, queue)
    except Exception:
        logger.debug('CQRS status: consumer count of %s failed', queue, exc_info=True)
        return None


def status(
    *,
    master: bool | None = None,
    replica: bool | None = None,
    databases: Sequence[str] | None = None,
    cqrs_ids: Sequence[str] | None = None,
    broker_stats: bool = True,
) -> Status:
    """The whole report. ``master`` / ``replica`` default to whether this service has such models."""
    if master is None:
        master = bool(MasterRegistry.models)
    if replica is None:
        replica = bool(ReplicaRegistry.models)
    return Status(
        master=master_status(databases) if master else None,
        replica=replica_status(cqrs_ids, broker_stats=broker_stats) if replica else None,
    )
