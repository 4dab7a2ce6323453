"""``BrokerTransport``: an upstream-style transport class backed by a :class:`Broker` instance.

Upstream transports are classes whose class methods ``produce`` / ``consume`` /
``clean_connection`` are called directly. Ours keep that surface and delegate to one broker per
process (rebuilt after a fork), configured from ``settings.CQRS``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, ClassVar

from dj_cqrs.constants import SignalType
from dj_cqrs.core import codec
from dj_cqrs.core.routing import HEADER_TARGET_QUEUE, broadcast_key, direct_key
from dj_cqrs.transport.base import (
    BaseTransport,
    Broker,
    DeliveryTicket,
    OutboundMessage,
    PublishError,
    current_ticket,
)

logger = logging.getLogger('django-cqrs')


def outbound_message(payload: Any) -> OutboundMessage:
    """The message a master publishes for ``payload`` (UPSTREAM_SPEC §5.4)."""
    headers = None
    if payload.signal_type == SignalType.SYNC and payload.queue:
        routing_key = direct_key(payload.queue, payload.cqrs_id)
        headers = {HEADER_TARGET_QUEUE: payload.queue}
    else:
        routing_key = broadcast_key(payload.cqrs_id)
    return OutboundMessage(
        routing_key, codec.encode_fields(payload.to_dict()), headers, describe=payload.describe()
    )


def _report(transport: Any, payload: Any, error: str | None) -> None:
    from dj_cqrs import signals

    if error is None:
        if logger.isEnabledFor(logging.INFO):  # (runs for every event: skip building the fields)
            logger.info(
                'CQRS is published: pk = %s (%s), correlation_id = %s.',
                payload.pk,
                payload.cqrs_id,
                payload.correlation_id,
                extra=payload.log_fields(),
            )
        signals.event_published.send(transport, payload=payload)
    else:
        logger.error(
            "CQRS couldn't be published: pk = %s (%s). Error: %s",
            payload.pk,
            payload.cqrs_id,
            error,
            extra=payload.log_fields(),
        )
        signals.event_publish_failed.send(transport, payload=payload, error=error)


def _settled(transport: Any, payload: Any, ticket: DeliveryTicket, error: str | None) -> None:
    _report(transport, payload, error)
    ticket.settle(error is None)


class BrokerTransport(BaseTransport):
    _brokers: ClassVar[dict[type, tuple[int, Broker]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def create_broker(cls) -> Broker:
        raise NotImplementedError

    @classmethod
    def broker(cls) -> Broker:
        pid = os.getpid()
        entry = cls._brokers.get(cls)
        if entry is not None and entry[0] == pid:
            return entry[1]
        with cls._lock:
            entry = cls._brokers.get(cls)
            if entry is None or entry[0] != pid:
                entry = (pid, cls.create_broker())
                cls._brokers[cls] = entry
            return entry[1]

    @classmethod
    def produce(cls, payload: Any) -> bool:
        message = outbound_message(payload)
        ticket = current_ticket.get()
        if ticket is not None:
            # The caller keeps the event (an outbox row) until the confirm: no need to wait for it.
            ticket.accept()
            cls.broker().publish_async([message], lambda error, failed: _settled(cls, payload, ticket, error))
            return True
        try:
            cls.broker().publish([message])
        except PublishError as exc:
            _report(cls, payload, str(exc))
            return False
        _report(cls, payload, None)
        return True

    @classmethod
    def consume(cls, cqrs_ids: Any = None, **kwargs: Any) -> None:
        from dj_cqrs.consumer.worker import Worker, replica_topology

        worker = Worker(cls.broker(), replica_topology(cqrs_ids), **kwargs)
        from dj_cqrs.consumer import supervisor

        supervisor.attach_worker(worker)
        worker.run()

    @classmethod
    def reset_all(cls) -> None:
        """Close and forget every broker of this process (the settings changed)."""
        with cls._lock:
            entries = list(BrokerTransport._brokers.values())
            BrokerTransport._brokers.clear()
        for pid, broker in entries:
            if pid == os.getpid():
                try:
                    broker.close()
                except Exception:
                    logger.debug('closing a broker failed', exc_info=True)

    @classmethod
    def clean_connection(cls, *args: Any, **kwargs: Any) -> None:
        with cls._lock:
            entry = cls._brokers.pop(cls, None)
        if entry is not None and entry[0] == os.getpid():
            entry[1].close()
