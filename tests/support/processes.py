"""Child processes of the multi-process tests and of the benchmark: log tails, process groups,
and the JSON-line agent protocol of their long-lived ``manage.py <name>_agent`` commands.

Imports nothing from Django, so the benchmark's runner can use it without a project.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors='replace').splitlines()
    except OSError:
        return f'<no log at {path}>'
    return '\n'.join(text[-lines:])


def stop_group(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process started with start_new_session=True, and everything in its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Children (consumer workers) may outlive the parent: finish the group in any case.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)  # raises ProcessLookupError once the group is empty
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


class AgentError(Exception):
    pass


class Agent:
    """A long-lived ``manage.py <command>``: one JSON request a line in, one JSON answer a line
    out; the first line it writes is the greeting ``{"result": "ready"}``.

    Subclasses name the ``command``, the ``error`` class raised, and the default timeouts.
    """

    command = 'agent'
    error: type[Exception] = AgentError
    call_timeout = 120.0
    close_timeout = 5.0

    def __init__(self, name: str, python: Path, project: Path, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = log.open('ab')
        self._log_fh.write(f'$ {python} manage.py {self.command}\n'.encode())
        self._log_fh.flush()
        self.proc = subprocess.Popen(
            [str(python), str(project / 'manage.py'), self.command],
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_fh,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise self.error(f'{self.name}: no answer within {timeout}s; log {self.log}:\n{tail(self.log)}')
        if line is None:
            raise self.error(f'{self.name} exited ({self.proc.poll()}); log {self.log}:\n{tail(self.log)}')
        return json.loads(line)

    def wait_ready(self, timeout: float = 60) -> Agent:
        if not self._ready:
            answer = self._next(timeout)
            if answer.get('result') != 'ready':
                raise self.error(f'{self.name}: unexpected greeting {answer!r}')
            self._ready = True
        return self

    def call(self, op: str, timeout: float | None = None, **kwargs: Any) -> Any:
        self.wait_ready()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({'op': op, **kwargs}) + '\n')
        self.proc.stdin.flush()
        answer = self._next(self.call_timeout if timeout is None else timeout)
        if not answer.get('ok'):
            arguments = repr(kwargs)
            if len(arguments) > 300:
                arguments = arguments[:300] + '...'
            raise self.error(
                f'{self.name} {op}({arguments}) failed: {answer.get("error")}\n{answer.get("traceback")}'
            )
        return answer['result']

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write('"quit"\n')
            self.proc.stdin.close()
        try:
            self.proc.wait(self.close_timeout)
        except subprocess.TimeoutExpired:
            stop_group(self.proc, grace=5)
        self._log_fh.close()
