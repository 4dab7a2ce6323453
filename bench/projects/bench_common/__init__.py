"""The bench agent: a long-lived ``manage.py bench_agent`` driven by bench/run.py.

One JSON request a line on stdin, one JSON answer a line on the original stdout; everything the
packages print goes to stderr (the agent's log). The operations are plain Django code, the same for
both packages, so a measurement never runs package-specific code paths of its own.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

Handler = Callable[..., Any]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarize(times: list[float]) -> dict[str, float]:
    """Mean, p50 and p95 of per-operation times (seconds)."""
    if not times:
        return {'mean': 0.0, 'p50': 0.0, 'p95': 0.0}
    ordered = sorted(times)
    return {
        'mean': sum(ordered) / len(ordered),
        'p50': ordered[len(ordered) // 2],
        'p95': ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
    }


def has_command(name: str) -> bool:
    from django.core.management import get_commands

    return name in get_commands()


def call(name: str, args: list[str]) -> dict[str, Any]:
    """``call_command`` in this (warm) process; the elapsed time excludes Django's start-up."""
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    cpu0, t0 = cpu_seconds(), time.time()
    call_command(name, *args, stdout=out, stderr=err)
    t1 = time.time()
    return {
        't_start': t0,
        't_end': t1,
        'elapsed': t1 - t0,
        'cpu': cpu_seconds() - cpu0,
        'stdout_tail': out.getvalue()[-500:],
        'stderr_tail': err.getvalue()[-500:],
    }


COMMON: dict[str, Handler] = {'has_command': has_command, 'call': call, 'pid': os.getpid}


def _answer(handlers: dict[str, Handler], request: dict[str, Any]) -> dict[str, Any]:
    op = request.get('op')
    args = {k: v for k, v in request.items() if k != 'op'}
    try:
        if op not in handlers:
            raise KeyError(f'unknown op {op!r}; known: {sorted(handlers)}')
        return {'ok': True, 'result': handlers[op](**args)}
    except Exception as exc:  # reported to bench/run.py, never kills the agent
        return {'ok': False, 'error': f'{type(exc).__name__}: {exc}', 'traceback': traceback.format_exc()}


def agent_command(handlers: dict[str, Handler]) -> type[BaseCommand]:
    all_handlers = {**COMMON, **handlers}

    class Command(BaseCommand):
        help = 'bench driver: JSON requests on stdin, one a line.'
        requires_system_checks: list[str] = []

        def handle(self, *args: Any, **options: Any) -> None:
            channel = os.fdopen(os.dup(1), 'w', buffering=1)
            os.dup2(2, 1)
            sys.stdout = sys.stderr
            channel.write(json.dumps({'ok': True, 'result': 'ready'}) + '\n')
            for line in sys.stdin:
                line = line.strip()
                if not line:
                    continue
                if line == '"quit"':
                    break
                channel.write(json.dumps(_answer(all_handlers, json.loads(line))) + '\n')

    return Command
