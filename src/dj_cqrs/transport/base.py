"""The transport contract.

Two layers live here:

* :class:`BaseTransport` is the upstream-compatible class users name in ``settings.CQRS['transport']``
  and subclass for custom transports. Its ``produce`` / ``consume`` / ``clean_connection`` are
  called on the class, as upstream does.
* :class:`Broker` is our plug-in contract for a backend that moves bytes: publish with
  confirmation, consume deliveries, ack or drop them. Our own transports (RabbitMQ, Kombu, memory)
  are a :class:`BaseTransport` whose class methods delegate to a process-wide :class:`Broker`
  instance built from the settings; the consumer in :mod:`dj_cqrs.consumer` drives the broker and
  is the only place that turns an outcome into ack / retry / dead letter.

A broker never imports models, ``master/`` or ``replica/``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dj_cqrs.core.routing import Topology


class TransportError(Exception):
    """A broker could not do what was asked (connection lost, channel closed, ...)."""


class PublishError(TransportError):
    """Some messages were not confirmed by the broker.

    ``failed`` lists the messages that are not known to be stored (nacked, returned as unroutable
    when ``mandatory`` matters, or unconfirmed when the connection dropped).
    """

    def __init__(self, message: str, failed: Sequence[OutboundMessage] = ()) -> None:
        super().__init__(message)
        self.failed = list(failed)


@dataclass(frozen=True)
class OutboundMessage:
    """One message to publish.

    ``exchange=None`` means the configured CQRS exchange; ``exchange=''`` is the broker's default
    exchange, which routes by queue name (used for delay queues).
    """

    routing_key: str
    body: bytes
    headers: Mapping[str, Any] | None = None
    expiration_ms: int | None = None
    exchange: str | None = None
    #: Text identifying the event in logs, e.g. ``pk = 1 (author)``; never contains credentials.
    describe: str = ''


@dataclass
class Delivery:
    """One message received by a consumer. ``tag`` belongs to the broker that produced it."""

    body: bytes
    routing_key: str
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    tag: Any = None


#: ``on_done(error, failed)``: error is None when every message was confirmed.
PublishCallback = Callable[[str | None, list[OutboundMessage]], None]


class DeliveryTicket:
    """Lets a caller of ``produce`` learn, later, whether its event was confirmed.

    The outbox publisher sets one in :data:`current_ticket` around ``producer.produce(payload)``.
    A transport that publishes asynchronously calls :meth:`accept` and, when the broker answered,
    :meth:`settle`; a transport that ignores tickets publishes synchronously as before.
    """

    def __init__(self, on_settled: Callable[[bool], None]) -> None:
        self.accepted = False
        self._on_settled = on_settled

    def accept(self) -> None:
        self.accepted = True

    def settle(self, delivered: bool) -> None:
        self._on_settled(delivered)


current_ticket: ContextVar[DeliveryTicket | None] = ContextVar('cqrs_delivery_ticket', default=None)


@dataclass(frozen=True)
class Capabilities:
    """What a broker can do; the consumer adapts its lifecycle to it."""

    confirms: bool = True
    delay_queues: bool = True
    dead_letters: bool = True
    expiration: bool = True


class BrokerConsumer(abc.ABC):
    """A consuming session on one queue (and its topology)."""

    @abc.abstractmethod
    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Return up to ``max_messages`` deliveries, waiting at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries: the broker forgets them."""

    @abc.abstractmethod
    def drop(self, delivery: Delivery) -> None:
        """Remove a delivery without redelivery (its retry or dead-letter copy is already stored)."""

    @abc.abstractmethod
    def requeue(self, delivery: Delivery) -> None:
        """Give a delivery back to the broker for redelivery (shutdown with work in hand)."""

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Publish and wait for confirms; raise :class:`PublishError` for what was not stored.

        Returns the messages the broker returned as unroutable (no queue bound), already logged.
        """

    @abc.abstractmethod
    def close(self) -> None: ...


class Broker(abc.ABC):
    """A backend that moves bytes. Instances are configured through the constructor."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Publish messages and return once the broker confirmed all of them.

        Returns the messages returned as unroutable (confirmed, but no queue was bound: nobody
        would ever receive them). Raises :class:`PublishError` carrying the messages not stored.
        """

    def publish_async(self, messages: Sequence[OutboundMessage], on_done: PublishCallback) -> None:
        """Publish without waiting; call ``on_done(error, failed)`` when settled. By default this is
        the synchronous :meth:`publish` followed by the callback."""
        try:
            self.publish(messages)
        except PublishError as exc:
            on_done(str(exc), exc.failed)
            return
        on_done(None, [])

    @abc.abstractmethod
    def open_consumer(self, topology: Topology, prefetch: int) -> BrokerConsumer:
        """Declare the topology (queues, bindings) and start consuming ``topology.queue``."""

    @abc.abstractmethod
    def declare_delay_queue(self, queue: str, delay_ms: int) -> str:
        """Declare (idempotently) a queue that holds messages ``delay_ms`` and then routes them to
        ``queue``; return its name, to publish to with ``exchange=''``."""

    @abc.abstractmethod
    def queue_size(self, queue: str) -> int:
        """Number of ready messages in ``queue`` (0 if it does not exist)."""

    @abc.abstractmethod
    def purge_queue(self, queue: str) -> int:
        """Remove every ready message of ``queue``; return how many were removed."""

    def open_reader(self, exchange: str, queue: str, prefetch: int = 0) -> BrokerConsumer:
        """Consume ``queue`` (e.g. the dead-letter queue) without binding anything new to it.

        ``prefetch=0`` means unlimited, so a reader can hold every message unacknowledged.
        """
        return self.open_consumer(Topology(exchange, queue, queue, ()), prefetch)

    @abc.abstractmethod
    def close(self) -> None:
        """Close connections held by this process."""


class BaseTransport:
    """Upstream-compatible transport base class (``dj_cqrs.transport.BaseTransport``)."""

    consumers: ClassVar[dict[str, Any]] = {}

    @staticmethod
    def produce(payload: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def consume(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def clean_connection(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError
