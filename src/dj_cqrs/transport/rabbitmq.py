"""RabbitMQ broker (pika).

Features:

* one long-lived producer connection per process, shared by all threads: a daemon I/O thread runs a
  ``pika.SelectConnection`` ioloop, so heartbeats are serviced while the process is idle; it is started
  on first publish and again in a forked child;
* publisher confirms, pipelined: a whole batch is published, then the acks are collected; messages are
  ``mandatory`` and persistent; unroutable ones are logged and returned, not failed;
* transparent reconnection with bounded exponential backoff, re-publishing what was not confirmed,
  bounded by ``publish_timeout``; what is still unconfirmed then raises :class:`PublishError`;
* consumers on their own ``BlockingConnection``, taking over queues declared by the upstream library
  (durable, no arguments), and broker-held delay queues (TTL + dead-lettering back to the queue).

URL format: ``amqp://user:password@host:port/vhost?option=value`` or ``amqps://...`` (TLS, port 5671 by
default). User and password are percent-decoded; an empty path or ``/`` is the default vhost ``/``
(``/%2F`` too). Query options are pika's ``URLParameters`` ones: ``heartbeat``, ``connection_attempts``,
``retry_delay``, ``socket_timeout``, ``blocked_connection_timeout``, ``ssl_options``, ...

Options (keyword only): ``url`` or the legacy ``host`` / ``port`` / ``user`` / ``password`` (defaults
localhost:5672 guest/guest); ``exchange`` (topic, durable; default ``cqrs``); ``heartbeat`` (default 60 s
unless the URL sets one), ``blocked_connection_timeout`` and ``connection_attempts`` override the URL;
``name`` prefixes the connection names shown by the broker; ``publish_timeout`` (default 10 s) bounds a
publish, retries included. Credentials never appear in logs or errors: :attr:`RabbitMQBroker.safe_url`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import pika
from pika.adapters.select_connection import IOLoop
from pika.exceptions import AMQPChannelError, AMQPConnectionError, AMQPError, NackError, UnroutableError
from pika.exchange_type import ExchangeType

from dj_cqrs.core.routing import DEFAULT_EXCHANGE, Topology, delay_queue_name
from dj_cqrs.transport.base import (
    Broker,
    BrokerConsumer,
    Delivery,
    OutboundMessage,
    PublishCallback,
    PublishError,
    TransportError,
)

logger = logging.getLogger('django-cqrs')

DEFAULT_HEARTBEAT = 60
_ERRORS = (AMQPError, OSError)
_T = TypeVar('_T')


def _properties(msg: OutboundMessage) -> pika.BasicProperties:
    expiration = None if msg.expiration_ms is None else str(msg.expiration_ms)
    headers = dict(msg.headers) if msg.headers else None
    return pika.BasicProperties(
        content_type='text/plain', delivery_mode=2, headers=headers, expiration=expiration
    )


def _log_unroutable(msg: OutboundMessage, exchange: str) -> None:
    text = 'CQRS message is unroutable (no queue bound): %s, routing key %r, exchange %r'
    logger.warning(text, msg.describe or '-', msg.routing_key, exchange)


@contextlib.contextmanager
def _translated(what: str, safe_url: str) -> Iterator[None]:
    try:
        yield
    except _ERRORS as exc:
        raise TransportError(f'{what} failed on {safe_url}: {exc!r}') from exc


@contextlib.contextmanager
def _throwaway_channel(conn: pika.BlockingConnection) -> Iterator[Any]:
    channel = conn.channel()
    try:
        yield channel
    finally:
        if channel.is_open:  # else a broker error already closed it
            channel.close()


class _Batch:
    """One ``publish()`` call. Only the I/O thread touches it until ``done`` is set."""

    def __init__(
        self, messages: Sequence[OutboundMessage], deadline: float, on_done: PublishCallback | None = None
    ) -> None:
        self.messages = list(messages)
        self.deadline = deadline
        self.on_done = on_done
        self.todo: list[int] = list(range(len(self.messages)))  # indexes still to (re)publish
        self.inflight: set[int] = set()
        self.returned: set[int] = set()
        self.nacked: set[int] = set()
        self.attempts = 0
        self.error: str | None = None
        self.failed: list[OutboundMessage] = []
        self.done = threading.Event()
        self._lock = threading.Lock()

    def finish(self, error: str | None, failed: Sequence[int]) -> None:
        with self._lock:  # the caller's own timeout races the I/O thread: the first one wins
            if self.done.is_set():
                return
            self.error, self.failed = error, [self.messages[i] for i in sorted(failed)]
            self.done.set()
        if self.on_done is not None:
            try:
                self.on_done(self.error, self.failed)
            except Exception:
                logger.exception('CQRS publish callback failed')


class _Producer:
    """The process's publishing connection. All methods but ``publish``/``stop`` run on the I/O thread."""

    MAX_ATTEMPTS = 6
    BACKOFF_BASE = 0.1
    BACKOFF_MAX = 2.0
    #: After taking messages from the inbox the I/O thread looks again every POLL_INTERVAL seconds,
    #: until it has found nothing for POLL_LINGER seconds; only then does the next hand-over wake
    #: it. A busy master thus hands messages over without a wake-up (a socket write and a thread
    #: switch) per message, and an idle one without a delay.
    POLL_INTERVAL = 0.001
    POLL_LINGER = 0.01
    #: How often unfinished batches are checked against their deadlines.
    SWEEP_INTERVAL = 0.25

    def __init__(self, broker: RabbitMQBroker) -> None:
        self._make_params, self._exchange = broker.connection_parameters, broker.exchange
        self._timeout, self._safe_url = broker.publish_timeout, broker.safe_url
        self._ioloop = IOLoop()
        self._conn: pika.SelectConnection | None = None
        self._channel: Any = None
        self._cause: Exception | None = None
        self._batches: dict[_Batch, None] = {}  # unfinished, in submission order
        self._tags: dict[int, tuple[_Batch, int]] = {}  # delivery tag -> message, ascending
        self._next_tag = 0
        self._declared: set[str] = set()
        self._failures = 0
        self._reconnect: Any = None
        self._stopping = False
        self._inbox: deque[_Batch] = deque()
        self._polling = False
        self._poll_timer: Any = None
        self._last_taken = 0.0
        self._sweeper: Any = None
        self.thread = threading.Thread(target=self._run, name='dj-cqrs-rabbitmq-producer', daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self._stopping

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        batch = _Batch(messages, time.monotonic() + self._timeout)
        if not self._hand_over(batch):
            raise PublishError(f'CQRS publisher for {self._safe_url} is closed', batch.messages)
        if not batch.done.wait(self._timeout + 2):
            batch.finish('no answer from the publishing thread', range(len(batch.messages)))
        if batch.error:
            raise PublishError(f'CQRS publish to {self._safe_url} failed: {batch.error}', batch.failed)
        return [batch.messages[i] for i in sorted(batch.returned)]

    def publish_async(self, messages: Sequence[OutboundMessage], on_done: PublishCallback) -> None:
        batch = _Batch(messages, time.monotonic() + self._timeout, on_done)
        if not self._hand_over(batch):
            batch.finish('publisher closed', range(len(batch.messages)))

    def _hand_over(self, batch: _Batch) -> bool:
        """Queue ``batch`` for the I/O thread (any thread); False if that thread is gone."""
        self._inbox.append(batch)
        if self._polling:
            return True  # the I/O thread looks at the inbox again within POLL_INTERVAL
        try:
            self._ioloop.add_callback_threadsafe(self._take_inbox)
        except Exception:  # the I/O thread is gone (broker closed concurrently)
            with contextlib.suppress(ValueError):
                self._inbox.remove(batch)
            return False
        return True

    def _take_inbox(self, from_timer: bool = False) -> None:
        if from_timer:
            self._poll_timer = None
        self._polling = True
        now = time.monotonic()
        taken = False
        while self._inbox:
            self._submit(self._inbox.popleft())
            taken = True
        if taken:
            self._last_taken = now
            self._pump()
        if now - self._last_taken < self.POLL_LINGER and not self._stopping:
            if self._poll_timer is None:
                self._poll_timer = self._ioloop.call_later(
                    self.POLL_INTERVAL, functools.partial(self._take_inbox, True)
                )
            return
        self._polling = False
        if self._inbox:  # handed over while we were deciding to stop looking
            self._take_inbox()

    def stop(self, timeout: float = 5.0) -> None:
        self._ioloop.add_callback_threadsafe(self._shutdown)
        self.thread.join(timeout)

    def _run(self) -> None:
        try:
            self._ioloop.start()
        except Exception:
            logger.exception('CQRS publisher I/O thread crashed')
            self._stopping = True
            for batch in [*self._batches, *self._inbox]:
                batch.finish('publishing thread crashed', range(len(batch.messages)))
        finally:
            with contextlib.suppress(Exception):
                self._ioloop.close()

    def _submit(self, batch: _Batch) -> None:
        if self._stopping:
            batch.finish('broker closed', range(len(batch.messages)))
            return
        self._batches[batch] = None
        if self._sweeper is None:
            self._sweeper = self._ioloop.call_later(self.SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for batch in list(self._batches):  # in submission order, and every batch has the same timeout
            if batch.deadline > now:
                break
            self._settle(batch, 'timed out')
        if self._batches:
            self._sweeper = self._ioloop.call_later(self.SWEEP_INTERVAL, self._sweep)

    def _settle(self, batch: _Batch, error: str | None = None) -> None:
        self._batches.pop(batch, None)
        failed = batch.nacked | batch.inflight | set(batch.todo)
        if error is None and failed:
            error = f'{len(failed)} message(s) rejected (nack) by the broker'
        batch.finish(error, list(failed))

    def _pump(self) -> None:
        if self._channel is None:
            if self._conn is None and self._reconnect is None and self._batches:
                self._connect()
            return
        for batch in list(self._batches):
            todo, batch.todo = batch.todo, []
            for n, idx in enumerate(todo):
                try:
                    self._send(batch.messages[idx])
                except _ERRORS as exc:  # the channel is closing under us: its close callback recovers
                    logger.debug('CQRS publish interrupted: %r', exc)
                    batch.todo = todo[n:]
                    return
                self._next_tag += 1
                self._tags[self._next_tag] = (batch, idx)
                batch.inflight.add(idx)

    def _send(self, msg: OutboundMessage) -> None:
        exchange = self._exchange if msg.exchange is None else msg.exchange
        if exchange and exchange not in self._declared:
            # nowait: a channel processes frames in order, so the publishes behind it find the exchange.
            self._channel.exchange_declare(exchange, ExchangeType.topic, durable=True)
            self._declared.add(exchange)
        self._channel.basic_publish(exchange, msg.routing_key, msg.body, _properties(msg), mandatory=True)

    def _connect(self) -> None:
        self._reconnect = None
        if self._stopping or not self._batches:
            return
        self._conn = pika.SelectConnection(
            self._make_params(),
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_closed,
            on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._on_ready(channel))

    def _on_ready(self, channel: Any) -> None:
        self._channel, self._next_tag, self._tags, self._declared = channel, 0, {}, set()
        self._pump()

    def _on_channel_closed(self, channel: Any, reason: Exception) -> None:
        # A channel error (e.g. an exchange declared with another type) loses every unconfirmed message
        # on it; closing the connection funnels this into the one recovery path, _on_closed.
        if self._conn is not None and self._conn.is_open:
            logger.warning('CQRS publisher channel closed by %s: %r', self._safe_url, reason)
            self._cause = reason
            self._conn.close()

    def _on_closed(self, conn: Any, reason: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = self._channel = None
        reason, self._cause = self._cause or reason, None
        if self._stopping:
            self._ioloop.stop()
            return
        for batch, idx in self._tags.values():
            if not batch.done.is_set():
                batch.inflight.discard(idx)
                batch.todo.append(idx)
        self._tags = {}
        if not self._batches:  # idle (broker restart, heartbeat missed...): the next publish reconnects
            logger.info('CQRS publisher connection to %s closed: %r', self._safe_url, reason)
            return
        self._failures += 1
        delay = min(self.BACKOFF_BASE * 2 ** (self._failures - 1), self.BACKOFF_MAX)
        now = time.monotonic()
        for batch in list(self._batches):
            # Re-published in the original order. A message the broker stored but whose confirm was lost
            # with the connection is published twice: delivery is at least once, never at most once.
            batch.todo.sort()
            batch.attempts += 1
            if batch.attempts >= self.MAX_ATTEMPTS or now + delay >= batch.deadline:
                self._settle(batch, f'connection lost: {reason!r}')
        if self._batches:
            logger.warning(
                'CQRS publisher connection to %s lost (%r), retry in %.1fs', self._safe_url, reason, delay
            )
            self._reconnect = self._ioloop.call_later(delay, self._connect)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        self._failures = 0  # a confirm proves the whole path works, unlike a mere successful connect
        nack = isinstance(method, pika.spec.Basic.Nack)
        if method.multiple:
            tags = list(itertools.takewhile(lambda t: t <= method.delivery_tag, self._tags))
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            batch, idx = self._tags.pop(tag, (None, 0))
            if batch is None or batch.done.is_set():
                continue
            batch.inflight.discard(idx)
            if nack:
                batch.nacked.add(idx)
            if not batch.inflight and not batch.todo:
                self._settle(batch)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # The broker sends basic.return before the ack of that message and in publish order, but does
        # not say which delivery tag it was: match the oldest unconfirmed message with the same content.
        key = (method.exchange, method.routing_key, body)
        for batch, idx in self._tags.values():
            msg = batch.messages[idx]
            exchange = self._exchange if msg.exchange is None else msg.exchange
            if idx not in batch.returned and (exchange, msg.routing_key, msg.body) == key:
                batch.returned.add(idx)
                _log_unroutable(msg, exchange)
                return
        logger.warning('CQRS message returned as unroutable: routing key %r', method.routing_key)

    def _shutdown(self) -> None:
        self._stopping = True
        while self._inbox:
            batch = self._inbox.popleft()
            batch.finish('broker closed', range(len(batch.messages)))
        for batch in list(self._batches):
            self._settle(batch, 'broker closed')
        if self._reconnect is not None:
            self._ioloop.remove_timeout(self._reconnect)
        if self._conn is not None and not (self._conn.is_closing or self._conn.is_closed):
            self._conn.close()  # _on_closed stops the loop; the timer guards against a hung close
            self._ioloop.call_later(2.0, self._ioloop.stop)
        else:
            self._ioloop.stop()


class RabbitMQConsumer(BrokerConsumer):
    """A consuming session on its own blocking connection (consumers are single-threaded)."""

    def __init__(self, broker: RabbitMQBroker, topology: Topology, prefetch: int) -> None:
        self._safe_url, self._exchange = broker.safe_url, broker.exchange
        self._buffer: deque[Delivery] = deque()
        self._unsettled: set[int] = set()  # delivered, neither acked nor nacked
        self._confirm: Any = None
        self._channel: Any = None
        self._declared = {topology.exchange}
        self._conn: pika.BlockingConnection | None = None
        try:
            self._conn = pika.BlockingConnection(broker.connection_parameters('consumer'))
            self._channel = self._conn.channel()
            self._channel.exchange_declare(topology.exchange, ExchangeType.topic, durable=True)
            # No queue arguments: the upstream library declares its queues durable without arguments, and
            # a declare with other arguments than the existing queue's fails with PRECONDITION_FAILED.
            bindings = {topology.queue: topology.queue_bindings()}
            bindings[topology.dead_letter_queue] = topology.dead_letter_bindings()
            for queue, keys in bindings.items():
                self._channel.queue_declare(queue, durable=True)
                for key in keys:
                    self._channel.queue_bind(queue, topology.exchange, routing_key=key)
            self._channel.basic_qos(prefetch_count=prefetch)
            self._channel.basic_consume(topology.queue, self._on_message)
        except _ERRORS as exc:
            self.close()
            raise TransportError(f'cannot consume {topology.queue!r} on {self._safe_url}: {exc!r}') from exc

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tag = method.delivery_tag
        self._unsettled.add(tag)
        headers = dict(properties.headers or {})
        self._buffer.append(Delivery(body, method.routing_key, headers, bool(method.redelivered), tag=tag))

    def _connection(self) -> pika.BlockingConnection:
        if self._conn is None:
            raise TransportError(f'CQRS consumer on {self._safe_url} is closed')
        return self._conn

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with _translated('fetch', self._safe_url):
            conn = self._connection()
            conn.process_data_events(0)
            while not self._buffer and (remaining := deadline - time.monotonic()) > 0:
                conn.process_data_events(remaining)  # type: ignore[arg-type]  # returns on the first event
            if self._buffer and len(self._buffer) < max_messages:
                conn.process_data_events(0)  # take what already arrived, without waiting for more
        return [self._buffer.popleft() for _ in range(min(max_messages, len(self._buffer)))]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        tags = {d.tag for d in deliveries}
        if not tags:
            return
        top = max(tags)
        with _translated('ack', self._safe_url):
            self._connection()
            # multiple=True settles every unsettled tag up to `top`: only when all of them are ours.
            if all(t in tags for t in self._unsettled if t <= top):
                self._channel.basic_ack(top, multiple=True)
            else:
                for tag in sorted(tags):
                    self._channel.basic_ack(tag)
        self._unsettled -= tags

    def drop(self, delivery: Delivery) -> None:
        self._nack(delivery, requeue=False)

    def requeue(self, delivery: Delivery) -> None:
        self._nack(delivery, requeue=True)

    def _nack(self, delivery: Delivery, requeue: bool) -> None:
        with _translated('nack', self._safe_url):
            self._connection()
            self._channel.basic_nack(delivery.tag, requeue=requeue)
        self._unsettled.discard(delivery.tag)

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Publish on a confirm-mode channel of this connection, one confirm at a time (retries and dead
        letters are few); return the unroutable messages."""
        returned: list[OutboundMessage] = []
        nacked: list[OutboundMessage] = []
        for i, msg in enumerate(messages):
            exchange = self._exchange if msg.exchange is None else msg.exchange
            try:
                if self._confirm is None:
                    self._confirm = self._connection().channel()
                    self._confirm.confirm_delivery()
                if exchange and exchange not in self._declared:
                    self._confirm.exchange_declare(exchange, ExchangeType.topic, durable=True)
                    self._declared.add(exchange)
                self._confirm.basic_publish(exchange, msg.routing_key, msg.body, _properties(msg), True)
            except UnroutableError:
                _log_unroutable(msg, exchange)
                returned.append(msg)
            except NackError:
                nacked.append(msg)
            except (*_ERRORS, TransportError) as exc:
                self._confirm = None  # a channel error closed it; the next publish opens another
                failed = [*nacked, *messages[i:]]
                raise PublishError(f'CQRS publish to {self._safe_url} failed: {exc!r}', failed) from exc
        if nacked:
            raise PublishError(f'{len(nacked)} message(s) rejected (nack) by {self._safe_url}', nacked)
        return returned

    def close(self) -> None:
        conn, self._conn, self._confirm = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception as exc:  # already dead: nothing left to release
                logger.debug('CQRS consumer close: %r', exc)


class RabbitMQBroker(Broker):
    """RabbitMQ backend; see the module docstring for the options."""

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        exchange: str = DEFAULT_EXCHANGE,
        heartbeat: int | None = None,
        blocked_connection_timeout: float | None = None,
        connection_attempts: int | None = None,
        name: str = 'dj_cqrs',
        publish_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._url_heartbeat = False
        self._legacy = (host or 'localhost', int(port or 5672), user or 'guest', password or 'guest')
        if url:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ('amqp', 'amqps'):
                raise ValueError(f"CQRS['url'] must use the amqp:// or amqps:// scheme, not {parts.scheme!r}")
            try:
                pika.URLParameters(url)
            except ValueError as exc:  # pika's messages name the bad option, never the credentials
                raise ValueError(f"invalid CQRS['url']: {exc}") from None
            self._url_heartbeat = 'heartbeat' in parse_qs(parts.query)
        self.exchange = exchange
        self._overrides = (heartbeat, blocked_connection_timeout, connection_attempts)
        self.name = name
        self.publish_timeout = publish_timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._producer: _Producer | None = None
        self._admin: pika.BlockingConnection | None = None
        self._admin_declared: set[str] = set()
        self._consumers: weakref.WeakSet[RabbitMQConsumer] = weakref.WeakSet()

    def _check_fork(self) -> None:
        # A forked child inherits the parent's sockets: using or closing them would break the parent's
        # connections, so the child forgets them (and a lock another thread may have held) and starts anew.
        if self._pid != os.getpid():
            self._reset()

    @property
    def safe_url(self) -> str:
        """The broker address with the password masked, for logs and errors."""
        params = self.connection_parameters()
        scheme = 'amqps' if params.ssl_options else 'amqp'
        user = getattr(params.credentials, 'username', '')
        return f'{scheme}://{user}:***@{params.host}:{params.port}/{quote(params.virtual_host, safe="")}'

    def connection_parameters(self, role: str = 'producer') -> pika.connection.Parameters:
        """Fresh pika parameters for one connection (pika writes negotiated values back into them)."""
        params: pika.connection.Parameters
        if self._url:
            params = pika.URLParameters(self._url)
        else:
            host, port, user, password = self._legacy
            params = pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials(user, password))
        heartbeat, blocked_timeout, attempts = self._overrides
        if heartbeat is not None or not self._url_heartbeat:
            params.heartbeat = DEFAULT_HEARTBEAT if heartbeat is None else heartbeat
        if blocked_timeout is not None:
            params.blocked_connection_timeout = blocked_timeout
        if attempts is not None:
            params.connection_attempts = attempts
        params.client_properties = {
            'connection_name': f'{self.name}.{role}',
            **(params.client_properties or {}),
        }
        return params

    def publish(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Publish with pipelined confirms on the process's producer connection; return the unroutable
        messages (logged, not failed). Raise :class:`PublishError` for what is not confirmed."""
        if not messages:
            return []
        return self._live_producer().publish(messages)

    def publish_async(self, messages: Sequence[OutboundMessage], on_done: PublishCallback) -> None:
        """Hand messages to the I/O thread and return at once; ``on_done(error, failed)`` is called
        from that thread when the broker confirmed them all (error None) or gave up."""
        self._live_producer().publish_async(messages, on_done)

    def _live_producer(self) -> _Producer:
        self._check_fork()
        with self._lock:
            if self._producer is None or not self._producer.alive:
                self._producer = _Producer(self)
            return self._producer

    def open_consumer(self, topology: Topology, prefetch: int) -> RabbitMQConsumer:
        self._check_fork()
        consumer = RabbitMQConsumer(self, topology, prefetch)
        self._consumers.add(consumer)
        return consumer

    def _with_admin(self, what: str, call: Callable[[pika.BlockingConnection], _T]) -> _T:
        # The admin connection idles between calls, so the broker may have dropped it for missed
        # heartbeats: a connection error is retried once on a new one.
        self._check_fork()
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._admin is None or not self._admin.is_open:
                        self._admin = pika.BlockingConnection(self.connection_parameters('admin'))
                        self._admin_declared = set()
                    return call(self._admin)
                except AMQPChannelError as exc:
                    raise TransportError(f'{what} failed on {self.safe_url}: {exc!r}') from exc
                except (AMQPConnectionError, OSError) as exc:
                    self._close_admin()
                    if attempt == 2:
                        raise TransportError(f'{what} failed on {self.safe_url}: {exc!r}') from exc
        raise AssertionError('unreachable')

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        with contextlib.suppress(Exception):
            if admin is not None and admin.is_open:
                admin.close()

    def declare_delay_queue(self, queue: str, delay_ms: int) -> str:
        name = delay_queue_name(queue, delay_ms)
        # Expired messages are dead-lettered through the default exchange straight back to `queue`: the
        # broker holds the delay, so it survives consumer restarts.
        arguments = {
            'x-message-ttl': delay_ms,
            'x-dead-letter-exchange': '',
            'x-dead-letter-routing-key': queue,
        }

        def declare(conn: pika.BlockingConnection) -> str:
            if name not in self._admin_declared:
                with _throwaway_channel(conn) as channel:
                    channel.queue_declare(name, durable=True, arguments=arguments)
                self._admin_declared.add(name)
            return name

        return self._with_admin('declaring a delay queue', declare)

    def queue_size(self, queue: str) -> int:
        def size(conn: pika.BlockingConnection) -> int:
            try:  # a passive declare of a missing queue closes its channel (404): a throwaway one
                with _throwaway_channel(conn) as channel:
                    return int(channel.queue_declare(queue, passive=True).method.message_count)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise

        return self._with_admin('queue size', size)

    def purge_queue(self, queue: str) -> int:
        def purge(conn: pika.BlockingConnection) -> int:
            try:
                with _throwaway_channel(conn) as channel:
                    return int(channel.queue_purge(queue).method.message_count)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise

        return self._with_admin('purging a queue', purge)

    def close(self) -> None:
        self._check_fork()
        with self._lock:
            producer, self._producer = self._producer, None
            self._close_admin()
        if producer is not None:
            producer.stop()
        for consumer in list(self._consumers):
            consumer.close()
