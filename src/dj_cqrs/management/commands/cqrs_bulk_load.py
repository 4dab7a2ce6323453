"""``manage.py cqrs_bulk_load`` (replica): load a dump file (UPSTREAM_SPEC §8.4, fixed)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import load
from dj_cqrs.ops.sync import ToolError


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Bulk load of a CQRS model to a replica service, from a file written by cqrs_bulk_dump. '
        'Each batch is one transaction; bad lines are reported with their number and the good ones '
        'loaded. With --clear the existing rows are deleted and the file loaded in one transaction, '
        'committed only if every line loads.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            '--input', '-i', required=True, help='Input file for loading (- for reading from stdin)'
        )
        parser.add_argument(
            '--clear',
            '-c',
            nargs='?',
            const=True,
            default=False,
            type=_tool.flag_value,
            help='Delete existing models first (--clear, or --clear=true/false)',
        )
        _tool.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        name = options['input']
        try:
            with _input(name, options) as stream:
                model = load.resolve_model(load.read_header(stream, name))
                report = load.load(
                    model,
                    stream,
                    batch=options['batch'],
                    clear=options['clear'],
                    on_problem=lambda problem: self.stderr.write(problem.message()),
                )
        except ToolError as exc:
            raise CommandError(str(exc))
        if report.rolled_back:
            raise CommandError(
                f'{len(report.problems)} line(s) of {name} could not be loaded (first: line '
                f'{report.problems[0].lineno}), so nothing was cleared or loaded: --clear loads every '
                f'line or none. {_advice(report)}'
            )
        self.stderr.write(f'Done!\n{report.loaded} instance(s) loaded.')
        if report.problems:
            raise CommandError(
                f'{len(report.problems)} of {report.lines} line(s) of {name} were not loaded '
                f'({report.count(load.PARSE)} unparseable, {report.count(load.UNSAVED)} not saved, '
                f'{report.count(load.ERROR)} with errors; first: line {report.problems[0].lineno}); '
                f'the other {report.lines - len(report.problems)} line(s) were loaded. {_advice(report)}'
            )


def _advice(report: load.LoadReport) -> str:
    if report.truncated:
        return 'The last line is incomplete: the file looks truncated; dump it again with cqrs_bulk_dump.'
    return 'Fix those lines (or the replica model) and load the file again; loaded rows are kept.'


def _input(name: str, options: dict[str, Any]) -> Any:
    if name == '-':
        return contextlib.nullcontext(_tool.stdin_of(options))
    if not os.path.isfile(name):
        raise ToolError(f"File {name} doesn't exist! Check the --input path.")
    return open(name, encoding='utf-8', newline='')
