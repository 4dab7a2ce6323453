"""Kombu transport: any broker kombu speaks (RabbitMQ, Redis, SQS, ``filesystem://``, ...).

Features: the CQRS topic exchange and routing keys, durable queues with the upstream bindings, a
dead-letter queue, retries and dead letters decided by our consumer (the same lifecycle as the
RabbitMQ transport), meta and correlation ids delivered. Publishing keeps one connection per
process and thread and retries on connection errors (kombu's ``ensure``). On brokers without
per-queue TTL (everything but AMQP) a retry is republished at once instead of after its delay.

URL: ``settings.CQRS['url']`` as kombu takes it (default ``amqp://localhost``), for example
``redis://127.0.0.1:6379/0`` or ``filesystem://``. Options: ``CQRS['transport_options']`` is
passed to kombu as ``transport_options`` (for ``filesystem://``: ``data_folder_in``,
``data_folder_out``, ``control_folder``; the folders are created if missing).
Prefetch: ``CQRS['consumer_prefetch_count']`` (default 10).

Needs kombu: ``pip install 'django-cqrs[kombu]'``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

try:
    import kombu
    from kombu import Connection, Exchange, Producer, Queue, binding
    from kombu.exceptions import KombuError, OperationalError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("KombuTransport needs kombu: pip install 'django-cqrs[kombu]'") from exc

from dj_cqrs.conf import DEFAULT_CONSUMER_PREFETCH_COUNT, cqrs_settings
from dj_cqrs.core.routing import DEFAULT_EXCHANGE, Topology, delay_queue_name
from dj_cqrs.transport.base import (
    Broker,
    BrokerConsumer,
    Capabilities,
    Delivery,
    OutboundMessage,
    PublishError,
    TransportError,
)
from dj_cqrs.transport.bridge import BrokerTransport
from dj_cqrs.transport.mixins import LoggingMixin

logger = logging.getLogger('django-cqrs')

_BASE_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError, socket.error, OperationalError)


def _errors_of(url: str, transport_options: dict[str, Any]) -> tuple[type[BaseException], ...]:
    """Our base errors plus the client library's own (e.g. redis.exceptions.ConnectionError, which
    is no OSError): kombu lists them per transport."""
    probe = Connection(url, transport_options=transport_options)
    try:
        return (*_BASE_ERRORS, *probe.connection_errors, *probe.channel_errors)
    finally:
        probe.release()


class KombuBroker(Broker):
    def __init__(
        self,
        *,
        url: str = 'amqp://localhost',
        exchange: str = DEFAULT_EXCHANGE,
        transport_options: dict[str, Any] | None = None,
        publish_retries: int = 3,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.transport_options = dict(transport_options or {})
        self.publish_retries = publish_retries
        self.exchange = Exchange(exchange, type='topic', durable=True)
        self._local = threading.local()
        self._pid = os.getpid()
        if url.startswith('filesystem'):
            for key in ('data_folder_in', 'data_folder_out', 'control_folder'):
                folder = self.transport_options.get(key)
                if folder:
                    Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Connection(url, transport_options=self.transport_options)
        self.is_amqp = probe.transport.driver_type == 'amqp'
        probe.release()
        self.errors = _errors_of(url, self.transport_options)

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return Capabilities(
            confirms=True, delay_queues=self.is_amqp, dead_letters=True, expiration=self.is_amqp
        )

    def connection(self) -> Connection:
        options = dict(self.transport_options)
        if self.is_amqp:
            options.setdefault('confirm_publish', True)  # py-amqp waits for the broker's confirm
        return Connection(self.url, transport_options=options)

    # -- producing ----------------------------------------------------------------------------------
    def _producer(self) -> Producer:
        if os.getpid() != self._pid:
            self._local = threading.local()
            self._pid = os.getpid()
        producer = getattr(self._local, 'producer', None)
        if producer is None:
            conn = self.connection()
            producer = Producer(conn.default_channel, exchange=self.exchange, auto_declare=True)
            self._local.connection = conn
            self._local.producer = producer
        return producer

    def _reset_producer(self) -> None:
        conn = getattr(self._local, 'connection', None)
        self._local.producer = None
        self._local.connection = None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                pass

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        for index, message in enumerate(messages):
            for attempt in range(self.publish_retries + 1):
                try:
                    _publish(self._producer(), self.exchange, message)
                    break
                except self.errors as exc:
                    self._reset_producer()
                    if attempt == self.publish_retries:
                        raise PublishError(
                            f'kombu publish failed: {type(exc).__name__}', messages[index:]
                        ) from exc
                    time.sleep(min(0.1 * 2**attempt, 2.0))
        return []

    # -- consuming ----------------------------------------------------------------------------------
    def open_consumer(self, topology: Topology, prefetch: int) -> BrokerConsumer:
        try:
            return KombuConsumer(self, topology, prefetch)
        except self.errors as exc:
            raise TransportError(f'kombu consumer failed: {exc}') from exc

    def declare_delay_queue(self, queue: str, delay_ms: int) -> str:
        name = delay_queue_name(queue, delay_ms)
        with self.connection() as conn:
            Queue(
                name,
                durable=True,
                queue_arguments={
                    'x-message-ttl': delay_ms,
                    'x-dead-letter-exchange': '',
                    'x-dead-letter-routing-key': queue,
                },
            )(conn.default_channel).declare()
        return name

    def queue_size(self, queue: str) -> int:
        try:
            with self.connection() as conn:
                return int(Queue(queue)(conn.default_channel).queue_declare(passive=True).message_count)
        except Exception:
            return 0

    def purge_queue(self, queue: str) -> int:
        with self.connection() as conn:
            return int(Queue(queue)(conn.default_channel).purge() or 0)

    def close(self) -> None:
        self._reset_producer()


# kombu replaces a falsy ``exchange`` argument by the producer's exchange; an Exchange object named
# '' is the way to reach the default exchange, which routes by queue name.
_DEFAULT_EXCHANGE = Exchange('')


def _publish(producer: Producer, exchange: Exchange, message: OutboundMessage) -> None:
    producer.publish(
        message.body,
        exchange=_DEFAULT_EXCHANGE if message.exchange == '' else exchange,
        routing_key=message.routing_key,
        headers=dict(message.headers or {}),
        content_type='text/plain',
        content_encoding='utf-8',
        delivery_mode=2,
        expiration=message.expiration_ms / 1000.0 if message.expiration_ms else None,
        retry=False,
    )


class KombuConsumer(BrokerConsumer):
    """A consuming session: the main queue with its bindings, plus the dead-letter queue declared."""

    def __init__(self, broker: KombuBroker, topology: Topology, prefetch: int) -> None:
        self.broker = broker
        self.connection = broker.connection()
        self.connection.ensure_connection(max_retries=1)
        channel = self.connection.channel()
        exchange = broker.exchange(channel)
        exchange.declare()
        queue = Queue(
            topology.queue,
            bindings=[binding(broker.exchange, routing_key=key) for key in topology.queue_bindings()],
            durable=True,
        )(channel)
        queue.declare()
        Queue(
            topology.dead_letter_queue,
            bindings=[binding(broker.exchange, routing_key=key) for key in topology.dead_letter_bindings()],
            durable=True,
        )(channel).declare()
        self._buffer: deque[Any] = deque()
        self.consumer = kombu.Consumer(channel, queues=[queue], on_message=self._buffer.append, no_ack=False)
        self.consumer.qos(prefetch_count=prefetch)
        self.consumer.consume()
        self._publisher = Producer(self.connection.channel(), exchange=broker.exchange, auto_declare=False)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        try:
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self.connection.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
            # Drain what is already waiting without blocking.
            while len(self._buffer) < max_messages:
                try:
                    self.connection.drain_events(timeout=0)
                except TimeoutError:
                    break
        except self.broker.errors as exc:
            raise TransportError(f'kombu connection lost: {exc}') from exc
        out: list[Delivery] = []
        while self._buffer and len(out) < max_messages:
            message = self._buffer.popleft()
            info = message.delivery_info or {}
            out.append(
                Delivery(
                    body=message.body if isinstance(message.body, bytes) else str(message.body).encode(),
                    routing_key=info.get('routing_key') or '',
                    headers=dict(message.headers or {}),
                    redelivered=bool(info.get('redelivered')),
                    tag=message,
                )
            )
        return out

    def _settle(self, action: str, delivery: Delivery) -> None:
        try:
            getattr(delivery.tag, action)()
        except self.broker.errors as exc:
            raise TransportError(f'kombu {action} failed: {exc}') from exc

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._settle('ack', delivery)

    def drop(self, delivery: Delivery) -> None:
        self._settle('reject', delivery)

    def requeue(self, delivery: Delivery) -> None:
        self._settle('requeue', delivery)

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        for index, message in enumerate(messages):
            try:
                _publish(self._publisher, self.broker.exchange, message)
            except self.broker.errors as exc:
                raise PublishError(f'kombu publish failed: {exc}', messages[index:]) from exc
        return []

    def close(self) -> None:
        try:
            self.consumer.cancel()
        except Exception:
            pass
        try:
            self.connection.release()
        except Exception:
            pass


class KombuTransport(LoggingMixin, BrokerTransport):
    """Upstream ``dj_cqrs.transport.kombu.KombuTransport``."""

    _consumer_class: ClassVar[type] = KombuConsumer

    @classmethod
    def create_broker(cls) -> Broker:
        raw = cqrs_settings.raw
        return KombuBroker(
            url=raw.get('url') or 'amqp://localhost',
            exchange=cqrs_settings.exchange,
            transport_options=raw.get('transport_options'),
        )

    @classmethod
    def consume(cls, cqrs_ids: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault(
            'prefetch', cqrs_settings.consumer_prefetch_count or DEFAULT_CONSUMER_PREFETCH_COUNT
        )
        super().consume(cqrs_ids, **kwargs)


_KombuConsumer = KombuConsumer
