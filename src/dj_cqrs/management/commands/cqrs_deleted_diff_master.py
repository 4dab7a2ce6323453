"""``manage.py cqrs_deleted_diff_master`` (master): second stage of the deleted-rows diff
(UPSTREAM_SPEC §8.9, fixed).

Reads cqrs_deleted_diff_replica's output on stdin, echoes line 1, and writes for each line the pks
the master does not have, or has but does not publish (``is_sync_instance()`` is false): the rows
the replica should not hold.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dj_cqrs.core import codec
from dj_cqrs.management.commands import _tool
from dj_cqrs.management.commands.cqrs_diff_replica import bad_lines_message
from dj_cqrs.ops import diff, sync
from dj_cqrs.ops.sync import ToolError

WHAT = 'the output of cqrs_deleted_diff_replica'


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Diff of deleted CQRS models pks from replica diff stream: reads the output of '
        'cqrs_deleted_diff_replica on stdin and writes the pks to delete, for cqrs_deleted_sync_replica.'
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stream = _tool.stdin_of(options)
        _tool.require_piped_stdin(stream, WHAT)
        try:
            header = diff.read_header(stream)
            if header is None:
                self.stderr.write('No input: nothing to diff.')
                return
            model = sync.master_model(header.cqrs_id)
        except (ToolError, diff.BadLine) as exc:
            raise CommandError(str(exc))
        bad: list[diff.BadLine] = []
        lines = 0
        try:
            self.stdout.write(header.raw)
            for lineno, text in diff.data_lines(stream):
                lines += 1
                try:
                    pks = diff.master_absent(model, lineno, diff.parse_pks(lineno, text))
                except diff.BadLine as exc:
                    bad.append(exc)
                    self.stderr.write(str(exc))
                    continue
                if pks:
                    self.stdout.write(codec.dumps(pks))
                    self.stdout.flush()
                    self.stderr.write(f'PK to delete: {pks!r}')
        except BrokenPipeError:
            raise _tool.pipe_closed()
        if bad:
            raise CommandError(bad_lines_message(bad, lines))
