"""Upstream import path ``dj_cqrs.state``."""

from dj_cqrs.master.serialization import cqrs_state

__all__ = ['cqrs_state']
