"""Structured fields on every ``django-cqrs`` log line: ``cqrs_id``, ``pk``, ``revision``,
``correlation_id`` and ``signal_type`` of the event being handled (None outside one).

The consumer and the publisher set the event around their work; a filter on the logger copies its
fields onto each record, so formatters and JSON handlers can use ``%(cqrs_id)s`` and friends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FIELDS = ('cqrs_id', 'pk', 'revision', 'correlation_id', 'signal_type')

_current: ContextVar[dict[str, Any] | None] = ContextVar('cqrs_log_event', default=None)


class EventFieldsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = _current.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        return True


@contextmanager
def event_context(payload: Any) -> Iterator[None]:
    token = _current.set(payload.log_fields() if payload is not None else None)
    try:
        yield
    finally:
        _current.reset(token)


def install() -> None:
    logger = logging.getLogger('django-cqrs')
    if not any(isinstance(f, EventFieldsFilter) for f in logger.filters):
        logger.addFilter(EventFieldsFilter())
