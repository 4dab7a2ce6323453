"""Routing keys and queue names shared by every transport (UPSTREAM_SPEC §5.4, §5.5)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EXCHANGE = 'cqrs'
DEAD_LETTER_PREFIX = 'dead_letter_'


def broadcast_key(cqrs_id: str) -> str:
    """Routing key of an event every replica of ``cqrs_id`` receives."""
    return cqrs_id


def direct_key(queue: str, cqrs_id: str) -> str:
    """Routing key that reaches only the replica consuming ``queue`` (direct syncs, retries)."""
    return f'cqrs.{queue}.{cqrs_id}'


def default_dead_letter_queue(queue: str) -> str:
    return DEAD_LETTER_PREFIX + queue


def delay_queue_name(queue: str, delay_ms: int) -> str:
    """Name of the broker-held queue where a retry waits ``delay_ms`` before returning to ``queue``."""
    return f'{queue}.delay.{delay_ms}'


@dataclass(frozen=True)
class Topology:
    """What a replica consumer declares: its queue, its dead-letter queue and their bindings."""

    exchange: str
    queue: str
    dead_letter_queue: str
    cqrs_ids: tuple[str, ...]

    def queue_bindings(self) -> list[str]:
        keys: list[str] = []
        for cqrs_id in self.cqrs_ids:
            keys.append(broadcast_key(cqrs_id))
            keys.append(direct_key(self.queue, cqrs_id))
        return keys

    def dead_letter_bindings(self) -> list[str]:
        return [direct_key(self.dead_letter_queue, cqrs_id) for cqrs_id in self.cqrs_ids]


# AMQP headers of ours. Upstream consumers ignore headers, so extra information goes here and
# never into the body keys they read.
HEADER_TARGET_QUEUE = 'x-cqrs-target-queue'
HEADER_DEAD_LETTER_REASON = 'x-cqrs-dead-letter-reason'
HEADER_ORIGINAL_ROUTING_KEY = 'x-cqrs-original-routing-key'
HEADER_DEAD_LETTERED_AT = 'x-cqrs-dead-lettered-at'
HEADER_ERROR = 'x-cqrs-error'
