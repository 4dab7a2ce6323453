"""Shared helpers of the e2e Django projects (imported by both master_site and replica_site).

The projects are driven by the pytest harness through a line-based JSON protocol: the harness
starts ``manage.py e2e_agent`` and writes one JSON request per line to its stdin; the agent answers
one JSON line per request on its (original) stdout. Everything Django or dj_cqrs prints goes to
stderr, so the protocol channel stays clean. ``manage.py e2e_agent '<json list>'`` runs a list of
requests once and prints the list of answers (handy for debugging by hand).
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand


def canon(value: Any) -> Any:
    """A JSON-safe, comparable form of a model field value."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    return value


def row_state(obj: Any) -> dict[str, Any]:
    """Every concrete field of a row by field name (an FK gives the raw related pk)."""
    return {f.name: canon(f.value_from_object(obj)) for f in obj._meta.concrete_fields}


def rows_state(model: Any, pks: list[Any] | None) -> dict[str, Any]:
    """``{str(pk): row or None}`` for the asked pks, or every row when pks is None."""
    qs = model._default_manager.all()
    if pks is not None:
        qs = qs.filter(pk__in=pks)
    found = {str(o.pk): row_state(o) for o in qs}
    if pks is None:
        return found
    return {str(pk): found.get(str(pk)) for pk in pks}


Handler = Callable[..., Any]


def _answer(handlers: dict[str, Handler], request: dict[str, Any]) -> dict[str, Any]:
    from django.db import close_old_connections

    close_old_connections()
    op = request.get('op')
    args = {k: v for k, v in request.items() if k != 'op'}
    try:
        if op not in handlers:
            raise KeyError(f'unknown op {op!r}; known: {sorted(handlers)}')
        return {'ok': True, 'result': canon(handlers[op](**args))}
    except Exception as exc:  # reported to the harness, never kills the agent
        return {'ok': False, 'error': f'{type(exc).__name__}: {exc}', 'traceback': traceback.format_exc()}


def agent_command(handlers: dict[str, Handler]) -> type[BaseCommand]:
    """Build the ``e2e_agent`` management command serving ``handlers``."""

    class Command(BaseCommand):
        help = 'e2e driver: JSON requests on stdin (one a line) or a JSON list as the argument.'

        def add_arguments(self, parser: Any) -> None:
            parser.add_argument('requests', nargs='?', help='JSON list of requests to run once')

        def handle(self, *args: Any, **options: Any) -> None:
            if options.get('requests'):
                answers = [_answer(handlers, r) for r in json.loads(options['requests'])]
                self.stdout.write(json.dumps(answers, indent=2))
                return
            # Keep the protocol channel private: anything printed by libraries goes to stderr.
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
                channel.write(json.dumps(_answer(handlers, json.loads(line))) + '\n')

    return Command
