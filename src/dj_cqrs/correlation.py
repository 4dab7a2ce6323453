"""Upstream import path ``dj_cqrs.correlation``."""

from dj_cqrs.payload import get_correlation_id

__all__ = ['get_correlation_id']
