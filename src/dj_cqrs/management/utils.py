"""Upstream import path ``dj_cqrs.management.utils``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def batch_qs(qs: Any, batch_size: int = 10000) -> Iterator[Any]:
    """Yield ``qs`` in batches of ``batch_size`` rows, keyset-paginated by primary key.

    Upstream slices an unordered queryset by offset, which can skip or repeat rows; this orders by
    pk and continues after the last pk seen, so rows are neither skipped nor repeated.
    """
    if batch_size <= 0:
        raise ValueError('batch_size must be positive.')
    qs = qs.order_by('pk')
    last = None
    while True:
        page = qs if last is None else qs.filter(pk__gt=last)
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1].pk
        if len(batch) < batch_size:
            return
