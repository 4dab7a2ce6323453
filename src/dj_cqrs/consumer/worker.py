"""The consumer loop: the one place where an outcome becomes ack, retry or dead letter.

Per delivery: decode (an undecodable body is dead-lettered with its reason and original bytes),
drop nothing silently, apply through ``dj_cqrs.controller.consumer.consume`` (the upstream seam),
and settle the delivery only after its retry or dead-letter copy is confirmed by the broker. Retries
wait in broker-held delay queues, so they survive a consumer restart with their retry count.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from django.utils import timezone

from dj_cqrs import signals
from dj_cqrs.conf import DEFAULT_RABBITMQ_PREFETCH_COUNT, cqrs_settings
from dj_cqrs.core import codec
from dj_cqrs.core.routing import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTERED_AT,
    HEADER_ERROR,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_TARGET_QUEUE,
    Topology,
    direct_key,
)
from dj_cqrs.log_context import event_context
from dj_cqrs.payload import TransportPayload
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.replica import tombstones
from dj_cqrs.replica.apply import Item, apply_batch
from dj_cqrs.transport.base import Broker, BrokerConsumer, Delivery, OutboundMessage, TransportError

logger = logging.getLogger('django-cqrs')

TOMBSTONE_PRUNE_INTERVAL = 3600.0
#: How often a worker looks at an emulated delay queue (brokers without per-queue TTL).
RELEASE_INTERVAL = 0.5
HEADER_NOT_BEFORE = 'x-cqrs-not-before'
MIN_TOMBSTONE_AGE = dt.timedelta(days=7)


def replica_topology(cqrs_ids: Any = None) -> Topology:
    ids = sorted(cqrs_ids) if cqrs_ids else sorted(ReplicaRegistry.models)
    return Topology(
        exchange=cqrs_settings.exchange,
        queue=cqrs_settings.queue or 'None',
        dead_letter_queue=cqrs_settings.replica.dead_letter_queue,
        cqrs_ids=tuple(ids),
    )


class Worker:
    """Consumes one replica queue until :meth:`stop` is called."""

    def __init__(
        self,
        broker: Broker,
        topology: Topology,
        *,
        prefetch: int | None = None,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.batch_size = cqrs_settings.replica.batch_size
        self.batch_wait = cqrs_settings.replica.batch_wait
        self.prefetch = max(
            prefetch or cqrs_settings.consumer_prefetch_count or DEFAULT_RABBITMQ_PREFETCH_COUNT,
            self.batch_size,
        )
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self._stop = threading.Event()
        self._next_prune = time.monotonic() + 60.0
        self._next_release = 0.0
        self._delay_reader: BrokerConsumer | None = None
        self.applied = 0
        self.failed = 0
        self.dead_lettered = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        delay = self.reconnect_delay
        while not self.stopping:
            consumer: BrokerConsumer | None = None
            try:
                consumer = self.broker.open_consumer(self.topology, self.prefetch)
                delay = self.reconnect_delay
                self._consume(consumer)
            except TransportError:
                logger.warning('AMQP connection error. Reconnecting...', exc_info=True)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
            except Exception:
                # Never a dead worker: what it held unacknowledged is redelivered after reconnecting.
                logger.exception('CQRS consumer error. Reconnecting...')
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
            finally:
                for session in (consumer, self._delay_reader):
                    if session is not None:
                        try:
                            session.close()
                        except TransportError:
                            pass
                self._delay_reader = None

    def run_once(self, consumer: BrokerConsumer, timeout: float = 1.0) -> int:
        """Handle one batch (what one fetch returns); return the number of deliveries handled."""
        self.release_delayed()
        deliveries = consumer.fetch(self.batch_size, timeout)
        if deliveries and self.batch_wait > 0:
            deadline = time.monotonic() + self.batch_wait
            while len(deliveries) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                deliveries += consumer.fetch(self.batch_size - len(deliveries), left)
        if self.stopping:
            for delivery in deliveries:
                consumer.requeue(delivery)
            return len(deliveries)
        self.handle_batch(consumer, deliveries)
        return len(deliveries)

    def _consume(self, consumer: BrokerConsumer) -> None:
        while not self.stopping:
            self.run_once(consumer)
            self._housekeeping()

    @property
    def _delayed_queue(self) -> str:
        return f'{self.topology.queue}.delayed'

    def release_delayed(self) -> int:
        """Move the due retries of an emulated delay queue back to the main queue; return how many.

        Each pass takes every waiting retry once: due ones go back to the queue, the others to the
        tail of the delay queue. A retry is acknowledged only after its copy is confirmed.
        """
        if self.broker.capabilities.delay_queues or time.monotonic() < self._next_release:
            return 0
        self._next_release = time.monotonic() + RELEASE_INTERVAL
        if self._delay_reader is None:
            self._delay_reader = self.broker.open_reader(self.topology.exchange, self._delayed_queue)
        reader = self._delay_reader
        waiting = self.broker.queue_size(self._delayed_queue)
        released = 0
        now = time.time()
        while waiting > 0:
            deliveries = reader.fetch(min(waiting, 500), 0.2)
            if not deliveries:
                break
            waiting -= len(deliveries)
            for delivery in deliveries:
                try:
                    due = float(delivery.headers.get(HEADER_NOT_BEFORE, 0))
                except (TypeError, ValueError):
                    due = 0.0
                target = self.topology.queue if due <= now else self._delayed_queue
                reader.publish([OutboundMessage(target, delivery.body, delivery.headers, exchange='')])
                reader.ack([delivery])
                released += target == self.topology.queue
        return released

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + TOMBSTONE_PRUNE_INTERVAL
        ttl = cqrs_settings.master.message_ttl or 0
        try:
            tombstones.prune(max(MIN_TOMBSTONE_AGE, dt.timedelta(seconds=ttl * 2)))
        except Exception:
            logger.warning('CQRS tombstone pruning failed.', exc_info=True)

    # -- one delivery -------------------------------------------------------------------------------
    def handle(self, consumer: BrokerConsumer, delivery: Delivery) -> None:
        self.handle_batch(consumer, [delivery])

    def handle_batch(self, consumer: BrokerConsumer, deliveries: list[Delivery]) -> None:
        """Apply a batch in one transaction, then ack what was applied after the commit and send
        each failure to its retry or to the dead-letter queue."""
        batch: list[tuple[Delivery, Item]] = []
        for delivery in deliveries:
            item = self._prepare(consumer, delivery)
            if item is not None:
                batch.append((delivery, item))
        if not batch:
            return
        apply_batch([item for _, item in batch])
        applied = [delivery for delivery, item in batch if item.result]
        if applied:
            consumer.ack(applied)
            self.applied += len(applied)
        for delivery, item in batch:
            payload = item.payload
            if not item.result:
                with event_context(payload):
                    self._fail(consumer, delivery, payload, item.model, item.error)
                continue
            logger.info(
                'CQRS is applied: pk = %s (%s), correlation_id = %s.',
                payload.pk,
                payload.cqrs_id,
                payload.correlation_id,
                extra=payload.log_fields(),
            )
            if item.skipped:
                signals.event_skipped.send(item.model, payload=payload, reason=item.skipped)
            else:
                signals.event_applied.send(item.model, payload=payload)

    def _prepare(self, consumer: BrokerConsumer, delivery: Delivery) -> Item | None:
        """Decode a delivery; dead-letter it (and return None) if it cannot be applied at all."""
        try:
            message = codec.decode(delivery.body)
        except codec.DecodeError as exc:
            logger.error("CQRS couldn't be parsed: %r (%s).", delivery.body[:1000], exc.reason)
            self._dead_letter(consumer, delivery, delivery.body, exc.reason, describe='undecodable body')
            return None

        payload = TransportPayload.from_wire(message, queue=self._target_queue(delivery, message.cqrs_id))
        logger.info(
            'CQRS is received: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
            extra=payload.log_fields(),
        )
        if payload.is_expired():
            self._dead_letter(
                consumer,
                delivery,
                self._body(payload),
                'expired',
                describe=payload.describe(),
                payload=payload,
                model=ReplicaRegistry.find(payload.cqrs_id),
            )
            return None
        model = ReplicaRegistry.find(payload.cqrs_id)
        if model is None:
            logger.error('Model for cqrs_id %s is not found.', payload.cqrs_id)
            self._dead_letter(
                consumer,
                delivery,
                delivery.body,
                f'unknown cqrs_id {payload.cqrs_id!r}',
                describe=payload.describe(),
                payload=payload,
            )
            return None
        return Item(payload, model)

    def _target_queue(self, delivery: Delivery, cqrs_id: str) -> str | None:
        """The replica a direct sync is addressed to (upstream never tells its consumers)."""
        target = delivery.headers.get(HEADER_TARGET_QUEUE)
        if isinstance(target, bytes):
            target = target.decode()
        if target:
            return str(target)
        if delivery.routing_key == direct_key(self.topology.queue, cqrs_id):
            return self.topology.queue
        return None

    def _fail(
        self,
        consumer: BrokerConsumer,
        delivery: Delivery,
        payload: TransportPayload,
        model: Any,
        error: BaseException | None,
    ) -> None:
        self.failed += 1
        logger.warning(
            'CQRS is failed: pk = %s (%s), correlation_id = %s, retries = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
            payload.retries,
        )
        try:
            retry = model.should_retry_cqrs(payload.retries, error)
            delay = model.get_cqrs_retry_delay(payload.retries) if retry else 0
        except Exception:
            logger.exception('CQRS retry hook failed: %s', payload.describe())
            retry, delay = False, 0
        if not retry:
            reason = f'failed after {payload.retries} retries'
            if error is not None:
                reason += f': {type(error).__name__}: {error}'
            self._dead_letter(
                consumer,
                delivery,
                self._body(payload),
                reason,
                describe=payload.describe(),
                payload=payload,
                model=model,
            )
            return
        self._retry(consumer, delivery, payload, delay, error)

    def _retry(
        self,
        consumer: BrokerConsumer,
        delivery: Delivery,
        payload: TransportPayload,
        delay: Any,
        error: BaseException | None,
    ) -> None:
        payload.retries += 1
        headers = dict(delivery.headers)
        headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
        if payload.queue:
            headers[HEADER_TARGET_QUEUE] = payload.queue
        if error is not None:
            headers[HEADER_ERROR] = f'{type(error).__name__}: {error}'[:1000]
        try:
            delay_s = max(float(delay or 0), 0.0)
        except (TypeError, ValueError):
            delay_s = 0.0
        queue = self.topology.queue
        target = queue
        if delay_s > 0 and self.broker.capabilities.delay_queues:
            target = self.broker.declare_delay_queue(queue, int(delay_s * 1000))
        elif delay_s > 0:
            # No per-queue TTL on this broker (Redis, filesystem): the retry waits in a queue of its
            # own, stamped with its due time, and this worker moves it back when it is due.
            target = self._delayed_queue
            headers[HEADER_NOT_BEFORE] = time.time() + delay_s
        # The default exchange routes by queue name: the retry reaches this replica only.
        consumer.publish(
            [OutboundMessage(target, self._body(payload), headers, exchange='', describe=payload.describe())]
        )
        consumer.drop(delivery)
        eta = timezone.now() + dt.timedelta(seconds=delay_s)
        logger.warning(
            'CQRS is delayed: pk = %s (%s), correlation_id = %s, delay = %s sec, eta = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
            delay,
            eta,
        )

    def _dead_letter(
        self,
        consumer: BrokerConsumer,
        delivery: Delivery,
        body: bytes,
        reason: str,
        *,
        describe: str,
        payload: TransportPayload | None = None,
        model: Any = None,
    ) -> None:
        headers = dict(delivery.headers)
        headers[HEADER_DEAD_LETTER_REASON] = reason[:2000]
        headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
        headers[HEADER_DEAD_LETTERED_AT] = timezone.now().isoformat()
        ttl = cqrs_settings.replica.dead_message_ttl
        consumer.publish(
            [
                OutboundMessage(
                    self.topology.dead_letter_queue,
                    body,
                    headers,
                    expiration_ms=ttl * 1000 if ttl else None,
                    exchange='',
                    describe=describe,
                )
            ]
        )
        consumer.drop(delivery)
        self.dead_lettered += 1
        logger.warning(
            'CQRS is added to dead letter queue: %s, reason = %s.',
            describe,
            reason,
            extra=payload.log_fields() if payload is not None else {'cqrs_id': None, 'pk': None},
        )
        signals.event_dead_lettered.send(model, payload=payload, reason=reason, body=body)

    @staticmethod
    def _body(payload: TransportPayload) -> bytes:
        return codec.encode_fields(payload.to_dict())
