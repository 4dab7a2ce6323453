"""Upstream import path ``dj_cqrs.delay``: an in-memory priority queue of delayed messages.

Our consumer keeps delayed retries in broker-held delay queues instead; these classes remain for
code that uses them directly.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from queue import Full
from typing import Any

from django.utils import timezone


class DelayMessage:
    def __init__(self, delivery_tag: Any, payload: Any, eta: datetime) -> None:
        self.delivery_tag = delivery_tag
        self.payload = payload
        self.eta = eta


class DelayQueue:
    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and max_size <= 0:
            raise ValueError('Delay queue max_size should be positive integer.')
        self._max_size = max_size
        self._heap: list[tuple[float, Any, DelayMessage]] = []

    def put(self, delay_message: DelayMessage) -> None:
        if not isinstance(delay_message, DelayMessage):
            raise TypeError('Delay queue accepts only DelayMessage instances.')
        if self.full():
            raise Full('Delay queue is full')
        heapq.heappush(self._heap, (delay_message.eta.timestamp(), delay_message.delivery_tag, delay_message))

    def get(self) -> DelayMessage:
        return heapq.heappop(self._heap)[2]

    def get_ready(self) -> Iterator[DelayMessage]:
        now = timezone.now().timestamp()
        while self._heap and self._heap[0][0] <= now:
            yield self.get()

    def qsize(self) -> int:
        return len(self._heap)

    def full(self) -> bool:
        return self._max_size is not None and self.qsize() >= self._max_size
