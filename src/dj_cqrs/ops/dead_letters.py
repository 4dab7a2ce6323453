"""Dead-letter queue tools: count, dump, retry, purge (UPSTREAM_SPEC §8.11, fixed).

Reading never hangs: the reader holds every message unacknowledged (unlimited prefetch), stops at
the count taken at the start or when the queue has nothing more within a second. ``retry``
acknowledges a dead letter only after its republished copy is confirmed by the broker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.core import codec
from dj_cqrs.core.routing import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTERED_AT,
    HEADER_ERROR,
)
from dj_cqrs.transport.base import Broker, BrokerConsumer, Delivery, OutboundMessage

READ_TIMEOUT = 1.0


class DeadLettersUnavailable(Exception):
    pass


def broker_of(transport: Any) -> Broker:
    from dj_cqrs.transport.bridge import BrokerTransport

    if not (isinstance(transport, type) and issubclass(transport, BrokerTransport)):
        raise DeadLettersUnavailable(
            'Dead letters commands are available only for the transports of dj_cqrs '
            '(RabbitMQTransport, KombuTransport, MemoryTransport).'
        )
    return transport.broker()


def dead_letter_queue() -> str:
    return cqrs_settings.replica.dead_letter_queue


def count(broker: Broker) -> int:
    return broker.queue_size(dead_letter_queue())


@contextmanager
def _reader(broker: Broker) -> Iterator[BrokerConsumer]:
    reader = broker.open_reader(cqrs_settings.exchange, dead_letter_queue(), prefetch=0)
    try:
        yield reader
    finally:
        reader.close()


def _read(reader: BrokerConsumer, limit: int) -> Iterator[Delivery]:
    seen = 0
    while seen < limit:
        batch = reader.fetch(min(limit - seen, 500), READ_TIMEOUT)
        if not batch:
            return
        for delivery in batch:
            seen += 1
            yield delivery


def dump(broker: Broker, write: Callable[[str], None]) -> int:
    """Write each dead letter's body as one line; nothing is removed. Returns the number written."""
    total = count(broker)
    written = 0
    with _reader(broker) as reader:
        for delivery in _read(reader, total):
            write(delivery.body.decode('utf-8', 'replace'))
            written += 1
    return written


@dataclass
class RetryReport:
    total: int = 0
    retried: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def retry(
    broker: Broker, on_progress: Callable[[int, int, dict[str, Any] | None, str | None], None]
) -> RetryReport:
    """Republish every dead letter to this replica's queue with ``retries`` reset to 0 and a fresh
    ``expires`` from the configured TTL; undecodable ones stay in the dead-letter queue."""
    report = RetryReport(total=count(broker))
    queue = cqrs_settings.queue or 'None'
    with _reader(broker) as reader:
        for index, delivery in enumerate(_read(reader, report.total), start=1):
            try:
                message = codec.decode(delivery.body)
            except codec.DecodeError as exc:
                report.skipped.append(exc.reason)
                on_progress(index, report.total, None, exc.reason)
                continue  # left unacknowledged: it returns to the dead-letter queue
            ttl = cqrs_settings.master.message_ttl
            expires = message.expires
            if expires is not None or not message.has_expires:
                expires = timezone.now() + dt.timedelta(seconds=ttl) if ttl else None
            fields = message.to_fields()
            fields['retries'] = 0
            fields['expires'] = expires.replace(microsecond=0).isoformat() if expires else None
            headers = {
                k: v
                for k, v in delivery.headers.items()
                if k not in (HEADER_DEAD_LETTER_REASON, HEADER_DEAD_LETTERED_AT, HEADER_ERROR)
                and not k.startswith('x-death')
            }
            body = codec.encode_fields(fields)
            reader.publish([OutboundMessage(queue, body, headers, exchange='', describe=message.describe())])
            reader.ack([delivery])
            shown = codec.loads(body)
            report.retried.append(shown)
            on_progress(index, report.total, shown, None)
    return report


def purge(broker: Broker) -> int:
    return broker.purge_queue(dead_letter_queue())
