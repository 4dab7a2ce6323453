"""Test helpers for users of dj_cqrs: in-memory transports and ``capture_events()``.

* ``MemoryTransport``: a real broker held in the process (topic routing, acks, delay queues, dead
  letters). Events published by masters wait in memory until ``MemoryTransport.drain()`` runs the
  replica consumer over them.
* ``LoopbackTransport``: every published event is encoded, decoded and applied to the replica
  models of the same process at once (master and replica in one test database).
* ``capture_events()``: records every event a master publishes, without patching anything::

      with capture_events() as events:
          Author.objects.create(name='n')
      assert [e.signal_type for e in events] == ['SAVE']
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.core import codec
from dj_cqrs.payload import TransportPayload
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.transport.base import BaseTransport, Broker
from dj_cqrs.transport.bridge import BrokerTransport
from dj_cqrs.transport.memory import MemoryBroker


class CapturedEvents(list):  # type: ignore[type-arg]
    """The payloads published while :func:`capture_events` is active, in order."""

    def __init__(self, publish: bool) -> None:
        super().__init__()
        self.publish = publish

    def of(self, cqrs_id: str) -> list[TransportPayload]:
        return [p for p in self if p.cqrs_id == cqrs_id]


_captures: list[CapturedEvents] = []
_captures_lock = threading.Lock()


@contextmanager
def capture_events(publish: bool = False) -> Iterator[CapturedEvents]:
    """Record published events; with ``publish=False`` (default) they do not reach the transport."""
    events = CapturedEvents(publish)
    with _captures_lock:
        _captures.append(events)
    try:
        yield events
    finally:
        with _captures_lock:
            _captures.remove(events)


def intercept(payload: Any) -> bool:
    """Called by the producer: record ``payload``; return whether to stop it here."""
    if not _captures:
        return False
    with _captures_lock:
        active = list(_captures)
    for events in active:
        events.append(payload)
    return not all(events.publish for events in active)


def wire_roundtrip(payload: Any) -> TransportPayload:
    """The payload as a replica receives it: encoded, decoded and rebuilt."""
    return TransportPayload.from_wire(
        codec.decode(codec.encode_fields(payload.to_dict())), queue=payload.queue
    )


class LoopbackTransport(BaseTransport):
    """Applies each produced event in-process, through the wire codec."""

    @staticmethod
    def produce(payload: Any) -> Any:
        from dj_cqrs.controller import consumer

        received = wire_roundtrip(payload)
        if not received.queue or received.queue == cqrs_settings.queue:  # else: for another replica
            consumer.consume(received)
        return True  # delivered, whatever the replica made of it

    @staticmethod
    def consume(*args: Any, **kwargs: Any) -> None:
        return None

    @staticmethod
    def clean_connection(*args: Any, **kwargs: Any) -> None:
        return None


class MemoryTransport(BrokerTransport):
    """A transport on an in-process :class:`~dj_cqrs.transport.memory.MemoryBroker`."""

    shared_broker: ClassVar[MemoryBroker] = MemoryBroker()

    @classmethod
    def create_broker(cls) -> Broker:
        cls.shared_broker.exchange = cqrs_settings.exchange
        cls._declare()
        return cls.shared_broker

    @classmethod
    def _declare(cls) -> None:
        # This service's replica queue exists from the start, as if its consumer had run once:
        # events published before the first drain() are kept, not dropped as unroutable.
        if cqrs_settings.queue and ReplicaRegistry.models:
            from dj_cqrs.consumer.worker import replica_topology

            cls.shared_broker.declare(replica_topology())

    @classmethod
    def drain(cls, cqrs_ids: Any = None, timeout: float = 0.0) -> int:
        """Run the replica consumer until the queue is empty; return the deliveries handled."""
        from dj_cqrs.consumer.worker import Worker, replica_topology

        worker = Worker(cls.broker(), replica_topology(cqrs_ids))
        consumer = cls.broker().open_consumer(worker.topology, worker.prefetch)
        handled = 0
        try:
            while True:
                n = worker.run_once(consumer, timeout=timeout)
                if not n:
                    return handled
                handled += n
        finally:
            consumer.close()

    @classmethod
    def reset(cls) -> None:
        """Empty every queue (the replica queue stays declared)."""
        cls.shared_broker.reset()
        cls._declare()
