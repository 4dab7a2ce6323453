"""Immutable message values (UPSTREAM_SPEC §2.11, §5.1)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

SAVE = 'SAVE'
DELETE = 'DELETE'
SYNC = 'SYNC'
SIGNAL_TYPES = frozenset({SAVE, DELETE, SYNC})


@dataclass(frozen=True)
class Message:
    """One CQRS message as it travels on the wire.

    ``has_expires`` is false for bodies of old masters that carry no ``expires`` key at all (the
    replica then applies its own TTL), as opposed to ``expires: null`` (never expires).
    """

    signal_type: str
    cqrs_id: str
    instance_data: dict[str, Any]
    instance_pk: Any = None
    previous_data: dict[str, Any] | None = None
    correlation_id: Any = None
    retries: int = 0
    expires: dt.datetime | None = None
    meta: Any = None
    has_expires: bool = field(default=True, compare=False)

    def to_fields(self) -> dict[str, Any]:
        return {
            'signal_type': self.signal_type,
            'cqrs_id': self.cqrs_id,
            'instance_data': self.instance_data,
            'previous_data': self.previous_data,
            'instance_pk': self.instance_pk,
            'correlation_id': self.correlation_id,
            'retries': self.retries,
            'expires': format_expires(self.expires),
            'meta': self.meta,
        }

    def with_retries(self, retries: int) -> Message:
        return replace(self, retries=retries)

    def describe(self) -> str:
        """The identification upstream puts in every log line: ``pk = 1 (author)``."""
        return f'pk = {self.instance_pk} ({self.cqrs_id})'


def format_expires(expires: dt.datetime | None) -> str | None:
    """``expires`` on the wire: ISO-8601, seconds precision, with offset when aware."""
    if expires is None:
        return None
    return expires.replace(microsecond=0).isoformat()
