"""Running the CQRS tool commands in tests: through ``call_command``, as ``manage.py`` does
(exit status, ``CommandError: ...`` on stderr), and as real processes joined by pipes."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.core.management import ManagementUtility, call_command

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / 'golden'


@dataclass
class Result:
    code: int
    out: str
    err: str


def call(name: str, *args: str, stdin: str | None = None, **options) -> Result:
    """``call_command``: output captured; a CommandError propagates."""
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        options['stdin'] = io.StringIO(stdin)
    call_command(name, *args, stdout=out, stderr=err, **options)
    return Result(0, out.getvalue(), err.getvalue())


def manage(*argv: str, stdin: str = '') -> Result:
    """``manage.py <argv>`` in this process: the exit status and streams a shell would see."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ManagementUtility(['manage.py', *argv]).execute()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
    return Result(code, out.getvalue(), err.getvalue())


def django_admin(*argv: str) -> list[str]:
    """The command line of ``manage.py <argv>`` for the in-process test project, as a process."""
    return [sys.executable, '-m', 'django', *argv, '--settings', 'tests.settings']


@dataclass
class Step:
    """One process of a pipeline: its argv, extra environment and working directory."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


def pipeline(*steps: Step | list[str], timeout: float = 180) -> list[Result]:
    """Run ``steps`` joined by pipes, like ``a | b | c``: every process's exit status and stderr,
    and the last one's stdout (the others' stdout is the next one's stdin)."""
    procs: list[tuple[subprocess.Popen, object]] = []
    previous = None
    for step in steps:
        if not isinstance(step, Step):
            step = Step(step)
        err = tempfile.TemporaryFile(mode='w+')  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            step.argv,
            cwd=step.cwd or REPO,
            env=step.env if step.env is not None else dict(os.environ),
            stdin=previous.stdout if previous is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        if previous is not None:
            previous.stdout.close()  # the next process owns the pipe now
        procs.append((proc, err))
        previous = proc
    last = procs[-1][0]
    out, _ = last.communicate(timeout=timeout)
    results = []
    for proc, err in procs:
        proc.wait(timeout)
        err.seek(0)
        results.append(Result(proc.returncode, out if proc is last else '', err.read()))
        err.close()
    return results
