"""Progress of the long-running tools (``-p/--progress``).

On a terminal the progress is a tqdm bar with rate and ETA when tqdm is installed
(``pip install django-cqrs[progress]``); without tqdm, or when the stream is not a terminal (a log
file, a pipe, CI), it is a plain line every few seconds, in upstream's wording::

    2000 of 10000 processed - 20% with rate 1432.7 rps, to go 0:00:05

``Progress.disabled()`` reports nothing (``--verbosity 0``, or ``-p`` not given).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TextIO

#: Seconds between two plain progress lines.
PLAIN_INTERVAL = 2.0


def status_line(done: int, total: int, elapsed: float) -> str:
    """Upstream's progress text: done, percentage, rate in records per second, time to go."""
    total = max(total, done)
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 else 0.0
    pct = int(done * 100 / total) if total else 100
    return (
        f'{done} of {total} processed - {pct}% with rate {rate:.1f} rps, '
        f'to go {dt.timedelta(seconds=round(left))}'
    )


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Counts processed records against a total that may grow (rows added during a run)."""

    def __init__(
        self,
        stream: TextIO | None,
        total: int,
        *,
        tty: bool | None = None,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        use_tqdm: bool = True,
    ) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._interval = interval
        self._bar: Any = None
        self._closed = stream is None
        if stream is None:
            return
        if tty is None:
            tty = bool(getattr(stream, 'isatty', lambda: False)())
        tqdm = _tqdm() if (tty and use_tqdm) else None
        if tqdm is not None:
            self._bar = tqdm(
                total=total,
                file=stream,
                unit=' records',
                dynamic_ncols=True,
                mininterval=0.5,
                leave=True,
            )

    @classmethod
    def disabled(cls) -> Progress:
        return cls(None, 0)

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def advance(self, n: int = 1) -> None:
        if self._closed or n <= 0:
            return
        self.done += n
        if self.done > self.total:
            self.set_total(self.done)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._line()

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._line()

    def _line(self) -> None:
        assert self.stream is not None
        self.stream.write(status_line(self.done, self.total, self._clock() - self._start) + '\n')
        if hasattr(self.stream, 'flush'):
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
