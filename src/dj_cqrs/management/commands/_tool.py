"""What the CQRS tool commands share: argument types, stdin, progress, error translation.

(A leading underscore keeps Django from listing this module as a command.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from dj_cqrs.ops.progress import Progress
from dj_cqrs.ops.sync import DEFAULT_BATCH

TRUE_WORDS = frozenset({'1', 'true', 't', 'yes', 'y', 'on'})
FALSE_WORDS = frozenset({'0', 'false', 'f', 'no', 'n', 'off', ''})


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, not {value!r}')
    return number


def flag_value(value: str) -> bool:
    """``--clear`` alone is on; ``--clear=True/False`` (upstream's form) is read as a boolean."""
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f'expects no value, or one of true/false, yes/no, 1/0, not {value!r}')


def add_batch(parser: CommandParser) -> None:
    parser.add_argument(
        '--batch',
        '-b',
        type=positive_int,
        default=DEFAULT_BATCH,
        help=f'Batch size (default {DEFAULT_BATCH})',
    )


def add_cqrs_id(parser: CommandParser, side: str, *, short: str = '-cid', required: bool = True) -> None:
    parser.add_argument(
        '--cqrs-id', short, dest='cqrs_id', required=required, help=f'CQRS_ID of the {side} model'
    )


def add_filter(parser: CommandParser) -> None:
    parser.add_argument(
        '--filter',
        '-f',
        default=None,
        help='Filter kwargs: a JSON object of Django lookups, e.g. \'{"id__in": [1, 2]}\'',
    )


def add_progress(parser: CommandParser, where: str = 'stdout') -> None:
    parser.add_argument(
        '--progress',
        '-p',
        action='store_true',
        default=False,
        help=f'Display progress on {where}: a bar with rate and ETA on a terminal (with tqdm '
        'installed), a plain line every few seconds otherwise; nothing with --verbosity 0',
    )


def stdin_of(options: dict[str, Any]) -> TextIO:
    stream = options.get('stdin')
    return stream if stream is not None else sys.stdin


def require_piped_stdin(stream: TextIO, what: str) -> None:
    """Refuse to wait for a person typing: these commands read another command's output."""
    isatty = getattr(stream, 'isatty', None)
    if isatty is not None and isatty():
        example = EXAMPLES.get(what, '')
        raise CommandError(f'This command reads {what} from stdin; pipe it in, e.g. {example}'.strip())


EXAMPLES = {
    'the output of cqrs_diff_master': 'cqrs_diff_master --cqrs-id=X | cqrs_diff_replica',
    'the output of cqrs_diff_replica': 'cqrs_diff_master --cqrs-id=X | cqrs_diff_replica | cqrs_diff_sync',
    'the output of cqrs_deleted_diff_replica': (
        'cqrs_deleted_diff_replica --cqrs-id=X | cqrs_deleted_diff_master'
    ),
    'the output of cqrs_deleted_diff_master': (
        'cqrs_deleted_diff_replica --cqrs-id=X | cqrs_deleted_diff_master | cqrs_deleted_sync_replica'
    ),
    'the replica side of cqrs_reconcile': (
        'manage.py cqrs_reconcile replica --cqrs-id X | manage.py cqrs_reconcile master'
    ),
}


class RawWriter:
    """Writes through a command's ``OutputWrapper`` without the newline it adds to every write."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> int:
        self._wrapper.write(text, ending='')
        return len(text)

    def flush(self) -> None:
        self._wrapper.flush()

    def isatty(self) -> bool:
        return self._wrapper.isatty()


def progress_for(
    command: BaseCommand, options: dict[str, Any], wrapper: OutputWrapper, total: int = 0
) -> Progress:
    if not options.get('progress') or options.get('verbosity', 1) < 1:
        return Progress.disabled()
    return Progress(RawWriter(wrapper), total, tty=wrapper.isatty())  # type: ignore[arg-type]


def pipe_closed() -> CommandError:
    return CommandError('The next command of the pipe stopped reading (broken pipe).')


def answer_lines(
    command: BaseCommand,
    stream: TextIO,
    first_line: str,
    answer: Callable[[int, str], list[Any]],
    describe: Callable[[list[Any]], str],
) -> None:
    """The stage of a diff pipeline: echo ``first_line``, then for each data line write the pks
    ``answer`` returns (as one JSON line, with ``describe`` on stderr). A bad line is reported with
    its number and skipped; if there was any, the command fails after the other lines."""
    from dj_cqrs.core import codec
    from dj_cqrs.ops import diff

    bad: list[diff.BadLine] = []
    lines = 0
    try:
        command.stdout.write(first_line)
        for lineno, text in diff.data_lines(stream):
            lines += 1
            try:
                pks = answer(lineno, text)
            except diff.BadLine as exc:
                bad.append(exc)
                command.stderr.write(str(exc))
                continue
            if pks:
                command.stdout.write(codec.dumps(pks))
                command.stdout.flush()
                command.stderr.write(describe(pks))
    except BrokenPipeError:
        raise pipe_closed()
    if bad:
        raise CommandError(bad_lines_message(bad, lines))


def bad_lines_message(bad: list[Any], lines: int) -> str:
    return (
        f'{len(bad)} of {lines} input line(s) could not be used (first: line {bad[0].lineno}: '
        f'{bad[0].reason}); the other {lines - len(bad)} line(s) were processed. Run the pipeline again '
        'from its first command.'
    )


def open_stream(
    command: BaseCommand, options: dict[str, Any], what: str, nothing_to: str, lookup: Callable[[Any], Any]
) -> tuple[TextIO, Any, Any] | None:
    """Start a pipeline stage that reads stdin: the stream, its line 1 and the model ``lookup``
    finds for it; None (after saying so) on empty input. Bad input is a CommandError."""
    from dj_cqrs.ops import diff
    from dj_cqrs.ops.sync import ToolError

    stream = stdin_of(options)
    require_piped_stdin(stream, what)
    try:
        header = diff.read_header(stream)
        if header is None:
            command.stderr.write(f'No input: nothing to {nothing_to}.')
            return None
        return stream, header, lookup(header)
    except (ToolError, diff.BadLine) as exc:
        raise CommandError(str(exc))
