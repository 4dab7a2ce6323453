"""In-process broker: a topic exchange, queues, delays and acks in memory.

Features: the same contract as the network brokers (topic routing with the CQRS routing keys,
confirmed publish, ack / drop / requeue, broker-held delay queues, expiration, dead-letter queue),
so the contract test suite runs against it and users' tests get real consumer semantics without a
server. Everything lives in one process; nothing survives it.

URL: none. Options: ``exchange`` (default ``cqrs``).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from dj_cqrs.core.routing import DEFAULT_EXCHANGE, Topology, delay_queue_name
from dj_cqrs.transport.base import Broker, BrokerConsumer, Capabilities, Delivery, OutboundMessage


@dataclass
class _Stored:
    body: bytes
    routing_key: str
    headers: dict[str, Any]
    expires_at: float | None
    redelivered: bool = False


@dataclass
class _Queue:
    messages: deque[_Stored] = field(default_factory=deque)
    #: (ttl seconds, target queue) for delay queues
    delay: tuple[float, str] | None = None
    delayed: list[tuple[float, _Stored]] = field(default_factory=list)


class MemoryBroker(Broker):
    """A broker held in this process; thread-safe."""

    capabilities = Capabilities(confirms=True, delay_queues=True, dead_letters=True, expiration=True)

    def __init__(self, *, exchange: str = DEFAULT_EXCHANGE) -> None:
        self.exchange = exchange
        self._lock = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._bindings: dict[str, set[str]] = {}  # queue -> binding keys
        self._tags = count(1)
        self._unacked: dict[int, tuple[str, _Stored]] = {}

    # -- topology ---------------------------------------------------------------------------------
    def declare_queue(self, name: str) -> None:
        with self._lock:
            self._queues.setdefault(name, _Queue())

    def bind(self, queue: str, key: str) -> None:
        with self._lock:
            self._queues.setdefault(queue, _Queue())
            self._bindings.setdefault(queue, set()).add(key)

    def declare_delay_queue(self, queue: str, delay_ms: int) -> str:
        name = delay_queue_name(queue, delay_ms)
        with self._lock:
            self._queues.setdefault(name, _Queue(delay=(delay_ms / 1000.0, queue)))
        return name

    def queue_size(self, queue: str) -> int:
        with self._lock:
            self._release_delayed()
            q = self._queues.get(queue)
            return len(q.messages) + len(q.delayed) if q else 0

    def purge_queue(self, queue: str) -> int:
        with self._lock:
            q = self._queues.get(queue)
            if q is None:
                return 0
            n = len(q.messages)
            q.messages.clear()
            return n

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._bindings.clear()
            self._unacked.clear()

    # -- publishing -------------------------------------------------------------------------------
    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        unroutable = []
        with self._lock:
            for message in messages:
                if not self._route(message):
                    unroutable.append(message)
            self._lock.notify_all()
        return unroutable

    def _route(self, message: OutboundMessage) -> bool:
        expires_at = time.monotonic() + message.expiration_ms / 1000.0 if message.expiration_ms else None
        stored_headers = dict(message.headers or {})
        if message.exchange == '':
            targets = [message.routing_key] if message.routing_key in self._queues else []
        else:
            targets = [
                queue
                for queue, keys in self._bindings.items()
                if any(_topic_match(key, message.routing_key) for key in keys)
            ]
        for name in targets:
            q = self._queues[name]
            stored = _Stored(message.body, message.routing_key, dict(stored_headers), expires_at)
            if q.delay is not None:
                q.delayed.append((time.monotonic() + q.delay[0], stored))
            else:
                q.messages.append(stored)
        return bool(targets)

    def _release_delayed(self) -> None:
        now = time.monotonic()
        for q in list(self._queues.values()):
            if q.delay is None or not q.delayed:
                continue
            ready = [item for item in q.delayed if item[0] <= now]
            if not ready:
                continue
            q.delayed = [item for item in q.delayed if item[0] > now]
            target = self._queues.setdefault(q.delay[1], _Queue())
            for _, stored in ready:
                # Like RabbitMQ dead-lettering out of a TTL queue: the routing key becomes the
                # target queue's name and the per-message expiration is dropped.
                target.messages.append(_Stored(stored.body, q.delay[1], stored.headers, None))

    # -- consuming --------------------------------------------------------------------------------
    def declare(self, topology: Topology) -> None:
        self.declare_queue(topology.queue)
        self.declare_queue(topology.dead_letter_queue)
        for key in topology.queue_bindings():
            self.bind(topology.queue, key)
        for key in topology.dead_letter_bindings():
            self.bind(topology.dead_letter_queue, key)

    def open_consumer(self, topology: Topology, prefetch: int) -> BrokerConsumer:
        self.declare(topology)
        return MemoryConsumer(self, topology.queue, prefetch)

    def _take(self, queue: str, limit: int) -> list[Delivery]:
        self._release_delayed()
        q = self._queues.setdefault(queue, _Queue())
        out: list[Delivery] = []
        now = time.monotonic()
        while q.messages and len(out) < limit:
            stored = q.messages.popleft()
            if stored.expires_at is not None and stored.expires_at <= now:
                continue  # the broker drops expired messages, as RabbitMQ does
            tag = next(self._tags)
            self._unacked[tag] = (queue, stored)
            out.append(
                Delivery(stored.body, stored.routing_key, dict(stored.headers), stored.redelivered, tag)
            )
        return out

    def _settle(self, tag: int, requeue: bool) -> None:
        with self._lock:
            entry = self._unacked.pop(tag, None)
            if entry is not None and requeue:
                queue, stored = entry
                stored.redelivered = True
                self._queues.setdefault(queue, _Queue()).messages.appendleft(stored)
                self._lock.notify_all()

    def close(self) -> None:
        pass


class MemoryConsumer(BrokerConsumer):
    def __init__(self, broker: MemoryBroker, queue: str, prefetch: int) -> None:
        self.broker = broker
        self.queue = queue
        self.prefetch = prefetch or 1_000_000
        self._held: set[int] = set()
        self.closed = False

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self.broker._lock:
            while True:
                room = min(max_messages, self.prefetch - len(self._held))
                out = self.broker._take(self.queue, room) if room > 0 else []
                if out:
                    self._held.update(d.tag for d in out)
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.broker._lock.wait(min(remaining, 0.05))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self._held.discard(d.tag)
            self.broker._settle(d.tag, requeue=False)

    def drop(self, delivery: Delivery) -> None:
        self._held.discard(delivery.tag)
        self.broker._settle(delivery.tag, requeue=False)

    def requeue(self, delivery: Delivery) -> None:
        self._held.discard(delivery.tag)
        self.broker._settle(delivery.tag, requeue=True)

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        return self.broker.publish(messages)

    def close(self) -> None:
        # Unacked deliveries return to the queue, as when an AMQP channel closes.
        for tag in list(self._held):
            self.broker._settle(tag, requeue=True)
        self._held.clear()
        self.closed = True


def _topic_match(binding: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more words."""
    if '*' not in binding and '#' not in binding:
        return binding == key
    pattern = binding.replace('.', '\x00').replace('#', '*')
    return fnmatch.fnmatchcase(key.replace('.', '\x00'), pattern)
