"""Upstream import path ``dj_cqrs.management.utils``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def batch_qs(qs: Any, batch_size: int = 10000) -> Iterator[Any]:
    """Yield ``qs`` as querysets of at most ``batch_size`` rows, keyset-paginated by primary key.

    Upstream slices an unordered queryset by offset, which can skip or repeat rows and costs
    O(offset) per batch; this pages through the primary keys in order (an index-only query), so
    rows are neither skipped nor repeated, rows added meanwhile are reached, and ``values()``
    querysets work too.
    """
    if batch_size <= 0:
        raise ValueError('batch_size must be positive.')
    last = None
    keys = qs.order_by('pk').values_list('pk', flat=True)
    while True:
        page = list((keys if last is None else keys.filter(pk__gt=last))[:batch_size])
        if not page:
            return
        yield qs.filter(pk__in=page).order_by('pk')
        last = page[-1]
        if len(page) < batch_size:
            return
