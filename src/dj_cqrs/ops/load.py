"""Loading a dump file into a replica (``cqrs_bulk_load``, UPSTREAM_SPEC §8.4, fixed).

Each batch of lines is applied in one transaction as SAVE events, through the replica's batched
apply (``dj_cqrs.replica.apply``): the same revision rules as the consumer (equal or older revisions
are skipped and still count as loaded, as upstream counts them), one upsert per batch for models
that keep the default hooks, and a savepoint per line for models with their own ``cqrs_save`` /
``cqrs_create`` / ``cqrs_update``, so one failing line never poisons the rest of its batch. Each
bad line is reported with its number, and the counts are what was committed.

With ``clear``, deleting the existing rows and loading the file are one transaction that is
committed only if every line loaded: a truncated or damaged dump never leaves a replica half empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction

from dj_cqrs import checks
from dj_cqrs.constants import SignalType
from dj_cqrs.core import codec
from dj_cqrs.ops.sync import DEFAULT_BATCH, ToolError, has_table, replica_model
from dj_cqrs.payload import TransportPayload
from dj_cqrs.replica.apply import Item, apply_batch
from dj_cqrs.replica.dispatch import replica_db

PARSE = 'parse'
UNSAVED = 'unsaved'
ERROR = 'error'
#: correlation id of the events a load applies (shown in the replica's logs)
LOAD = 'cqrs_bulk_load'


@dataclass(frozen=True)
class LineProblem:
    lineno: int
    kind: str
    detail: str = ''

    def message(self) -> str:
        if self.kind == PARSE:
            return f"Dump file can't be parsed: line {self.lineno}!"
        if self.kind == UNSAVED:
            return f"Instance can't be saved: line {self.lineno}!"
        return f'Unexpected error: line {self.lineno}! {self.detail}'


@dataclass
class LoadReport:
    cqrs_id: str
    lines: int = 0
    loaded: int = 0
    cleared: int | None = None
    problems: list[LineProblem] = field(default_factory=list)
    #: The last line is not a complete record: the file was cut short.
    truncated: bool = False
    #: ``clear`` was given and a line failed: nothing was deleted or loaded.
    rolled_back: bool = False

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)


def read_header(stream: Any, name: str) -> str:
    """The CQRS_ID on line 1 of a dump. Raises :class:`ToolError` for an empty file."""
    first = stream.readline()
    cqrs_id = first.strip() if isinstance(first, str) else ''
    if not cqrs_id:
        raise ToolError(f'File {name} is empty! Line 1 must be the CQRS_ID, as cqrs_bulk_dump writes it.')
    return cqrs_id


def resolve_model(cqrs_id: str) -> Any:
    """The replica model named on line 1; the error lists the replica ids this service has."""
    try:
        return replica_model(cqrs_id)
    except ToolError as exc:
        if len(cqrs_id) <= 80 and not cqrs_id.startswith(('{', '[')):
            raise
        shown = cqrs_id if len(cqrs_id) <= 80 else cqrs_id[:77] + '...'
        raise ToolError(
            f'{str(exc).replace(cqrs_id, shown)} Line 1 of a dump file must be the CQRS_ID, as '
            'cqrs_bulk_dump writes it.'
        )


def load(
    model: Any,
    lines: Iterable[str],
    *,
    batch: int = DEFAULT_BATCH,
    clear: bool = False,
    on_problem: Callable[[LineProblem], None] | None = None,
) -> LoadReport:
    """Apply the data lines of a dump (line 1 already read) to ``model``; return the counts."""
    report = LoadReport(cqrs_id=model.CQRS_ID)
    db = replica_db(model)
    if clear and not has_table(model):
        raise ToolError(f'--clear needs a replica table, and {model.__name__} has none.')
    if has_table(model):
        problems = checks.check_tables([db])
        if problems:
            raise ToolError(f'{problems[0].msg} {problems[0].hint}')

    outer = transaction.atomic(using=db) if clear else contextlib.nullcontext()
    try:
        with outer:
            if clear:
                report.cleared = _clear(model, db)
            pending: list[tuple[int, str]] = []
            for lineno, raw in enumerate(lines, start=2):
                pending.append((lineno, raw))
                if len(pending) >= batch:
                    _run_batch(model, pending, report, on_problem)
                    pending = []
            if pending:
                _run_batch(model, pending, report, on_problem)
            if clear and report.problems:
                raise _Abort
    except _Abort:
        report.rolled_back = True
        report.loaded = 0
    return report


class _Abort(Exception):
    """A line failed during a --clear load: roll everything back."""


def _clear(model: Any, db: str) -> int:
    try:
        with transaction.atomic(using=db):
            deleted, _ = model._default_manager.db_manager(db).all().delete()
    except DatabaseError as exc:
        raise ToolError(f'Delete operation fails! {exc}')
    return int(deleted)


def _parse(lineno: int, raw: str) -> tuple[Any, LineProblem | None]:
    text = raw.strip()
    try:
        data = codec.loads(text) if text else None
    except ValueError as exc:
        return None, LineProblem(lineno, PARSE, str(exc))
    if not isinstance(data, dict):
        return None, LineProblem(lineno, PARSE, 'not a JSON object')
    return data, None


def _run_batch(
    model: Any,
    pending: list[tuple[int, str]],
    report: LoadReport,
    on_problem: Callable[[LineProblem], None] | None,
) -> None:
    problems: list[LineProblem] = []
    items: list[tuple[int, dict[str, Any]]] = []
    for lineno, raw in pending:
        data, problem = _parse(lineno, raw)
        if problem is not None:
            problems.append(problem)
        else:
            items.append((lineno, data))
    report.lines += len(pending)
    last_lineno, last_raw = pending[-1]
    if problems and problems[-1].lineno == last_lineno and not last_raw.endswith('\n'):
        report.truncated = True  # dumps end without a newline: an incomplete record is the end

    loaded, save_problems = _apply(model, items)
    report.loaded += loaded
    problems.extend(save_problems)
    problems.sort(key=lambda p: p.lineno)
    report.problems.extend(problems)
    if on_problem is not None:
        for problem in problems:
            on_problem(problem)


def _apply(model: Any, items: list[tuple[int, dict[str, Any]]]) -> tuple[int, list[LineProblem]]:
    if not items:
        return 0, []
    batch = [Item(_event(model, data), model) for _, data in items]
    apply_batch(batch)
    loaded, problems = 0, []
    for (lineno, _), item in zip(items, batch):
        if item.result:
            loaded += 1
        elif item.error is not None:
            problems.append(LineProblem(lineno, ERROR, f'{type(item.error).__name__}: {item.error}'))
        else:
            problems.append(LineProblem(lineno, UNSAVED))
    return loaded, problems


def _event(model: Any, data: dict[str, Any]) -> TransportPayload:
    return TransportPayload(SignalType.SAVE, model.CQRS_ID, data, data.get('id'), correlation_id=LOAD)
