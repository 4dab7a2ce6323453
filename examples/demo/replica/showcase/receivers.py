"""Counts applied, skipped and dead-lettered events from the signals of ``dj_cqrs.signals``.

They are sent by the consumer process (``cqrs_consume``) after each batch commits; the counts land in
the replica's database, where the web page reads them.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

logger = logging.getLogger(__name__)


def bump(name: str, detail: str = '') -> None:
    from showcase.models import PipelineCounter

    now = timezone.now()
    try:
        updated = PipelineCounter.objects.filter(name=name).update(
            value=F('value') + 1, last_at=now, detail=detail[:500]
        )
        if not updated:
            PipelineCounter.objects.create(name=name, value=1, last_at=now, detail=detail[:500])
    except DatabaseError:  # a counter must never fail the consumer
        logger.warning('demo counter %s not updated', name, exc_info=True)


def on_applied(sender: Any, payload: Any = None, **kwargs: Any) -> None:
    bump('applied', f'{payload.signal_type} {payload.cqrs_id} #{payload.pk}' if payload else '')


def on_skipped(sender: Any, payload: Any = None, reason: Any = None, **kwargs: Any) -> None:
    bump('skipped', str(reason or ''))


def on_dead_lettered(sender: Any, payload: Any = None, reason: Any = None, **kwargs: Any) -> None:
    bump('dead_lettered', str(reason or ''))


def connect() -> None:
    from dj_cqrs import signals

    for name, receiver in (
        ('event_applied', on_applied),
        ('event_skipped', on_skipped),
        ('event_dead_lettered', on_dead_lettered),
    ):
        signal = getattr(signals, name, None)  # lifecycle signals of dj_cqrs (not in upstream)
        if signal is not None:
            signal.connect(receiver, dispatch_uid=f'showcase.{name}')
