"""Upstream import path ``dj_cqrs.dataclasses``."""

from dj_cqrs.payload import TransportPayload

__all__ = ['TransportPayload']
