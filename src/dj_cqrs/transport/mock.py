"""``TransportMock`` (upstream ``dj_cqrs.transport.mock``): echoes payloads, applies nothing."""

from __future__ import annotations

from typing import Any

from dj_cqrs.transport.base import BaseTransport


class TransportMock(BaseTransport):
    @staticmethod
    def produce(payload: Any) -> Any:
        return TransportMock.consume(payload)

    @staticmethod
    def consume(payload: Any = None, **kwargs: Any) -> Any:
        return payload
