"""``cqrs_consume`` worker processes: started, watched, restarted when they die, stopped cleanly.

SIGTERM or SIGINT in the parent stops every worker: each gets SIGINT, finishes the message in
hand and exits; a worker still alive after ``sigint_timeout`` seconds is killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger('django-cqrs')

_current_worker: Any = None
_stop_requested = threading.Event()


def attach_worker(worker: Any) -> None:
    """Let this process's stop signal reach ``worker`` (called by transports' ``consume``)."""
    global _current_worker
    _current_worker = worker
    if _stop_requested.is_set():
        worker.stop()


def _request_stop(signum: int, frame: Any) -> None:
    _stop_requested.set()
    if _current_worker is not None:
        _current_worker.stop()


def _child_main(cqrs_ids: list[str] | None) -> None:
    """Entry point of a worker process (spawned: Django is set up again here)."""
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    import django

    django.setup()
    from dj_cqrs.transport import get_transport

    transport = get_transport()
    kwargs = {'cqrs_ids': set(cqrs_ids)} if cqrs_ids else {}
    try:
        transport.consume(**kwargs)
    except KeyboardInterrupt:
        pass


@dataclass
class Supervisor:
    workers: int = 1
    cqrs_ids: list[str] | None = None
    sigint_timeout: float = 5.0
    sigkill_timeout: float = 1.0
    reload: bool = False
    ignore_paths: list[str] = field(default_factory=list)
    poll_interval: float = 0.5
    target: Callable[..., None] = _child_main

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context('spawn')
        self._processes: list[Any] = []
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._failures: list[int] = []

    def _start(self, index: int) -> Any:
        process = self._context.Process(target=self.target, args=(self.cqrs_ids,), daemon=False)
        process.start()
        logger.info('Consumer process with pid %s started', process.pid)
        return process

    def stop(self, *args: Any) -> None:
        self._stop.set()

    def request_restart(self, *args: Any) -> None:
        self._restart.set()

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        if self.reload:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.request_restart)
        watcher = _FileWatcher(Path.cwd(), self.ignore_paths) if self.reload else None
        try:
            self._processes = [self._start(i) for i in range(self.workers)]
            self._failures = [0] * self.workers
            while not self._stop.wait(self.poll_interval):
                if watcher is not None:
                    changed = watcher.changes()
                    if changed:
                        logger.warning(
                            'Detected changes in %s. Reloading...', ', '.join(f'"{p}"' for p in changed)
                        )
                        self._restart.set()
                if self._restart.is_set():
                    self._restart.clear()
                    self._terminate_all()
                    self._processes = [self._start(i) for i in range(self.workers)]
                    continue
                self._replace_dead()
        finally:
            self._terminate_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace_dead(self) -> None:
        for index, process in enumerate(self._processes):
            if process.is_alive():
                continue
            self._failures[index] += 1
            # Back off a worker that keeps dying at start-up (bad settings, database down).
            backoff = min(2 ** min(self._failures[index], 5), 30) if self._failures[index] > 1 else 0
            logger.warning(
                'Consumer process with pid %s died (exit code %s); restarting in %s s.',
                process.pid,
                process.exitcode,
                backoff,
            )
            if backoff and self._stop.wait(backoff):
                return
            self._processes[index] = self._start(index)

    def _terminate_all(self) -> None:
        for process in self._processes:
            if process.is_alive() and process.pid:
                try:
                    os.kill(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.sigint_timeout
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0))
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(self.sigkill_timeout)
            if process.pid:
                logger.info('Consumer process with pid %s stopped.', process.pid)
        self._processes = []


class _FileWatcher:
    """Polls the modification times of ``*.py`` files under a directory."""

    def __init__(self, root: Path, ignore_paths: list[str]) -> None:
        self.root = root
        self.ignore = [Path(p).resolve() for p in ignore_paths]
        self._mtimes = self._scan()

    def _scan(self) -> dict[Path, float]:
        result = {}
        for path in self.root.rglob('*.py'):
            resolved = path.resolve()
            if any(resolved.is_relative_to(ignored) for ignored in self.ignore):
                continue
            try:
                result[resolved] = path.stat().st_mtime
            except OSError:
                continue
        return result

    def changes(self) -> list[str]:
        current = self._scan()
        changed = [p for p in current.keys() | self._mtimes.keys() if current.get(p) != self._mtimes.get(p)]
        self._mtimes = current
        return sorted(os.path.relpath(p, self.root) for p in changed)
