"""``manage.py cqrs_deleted_sync_replica`` (replica): last stage of the deleted-rows diff
(UPSTREAM_SPEC §8.10).

Reads cqrs_deleted_diff_master's output on stdin and deletes the listed replica rows, one
transaction per line, leaving delete tombstones so that a stale event still in flight cannot bring
a row back. Nothing is written to stdout; a summary goes to stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import diff, sync

WHAT = 'the output of cqrs_deleted_diff_master'


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Diff for deleted objects synchronizer from CQRS master stream: reads the output of '
        'cqrs_deleted_diff_master on stdin and deletes the listed replica rows.'
    )

    def handle(self, *args: Any, **options: Any) -> None:
        opened = _tool.open_stream(
            self, options, WHAT, 'delete', lambda h: sync.replica_model(h.cqrs_id, table=True)
        )
        if opened is None:
            return
        stream, _header, model = opened
        bad: list[diff.BadLine] = []
        errors = 0
        deleted = 0
        lines = 0
        for lineno, text in diff.data_lines(stream):
            lines += 1
            try:
                result = diff.delete_replica_rows(model, lineno, diff.parse_pks(lineno, text))
            except diff.BadLine as exc:
                bad.append(exc)
                self.stderr.write(str(exc))
                continue
            if result.error is not None:
                errors += 1
                self.stderr.write(result.error)
            deleted += result.deleted
        if options.get('verbosity', 1) >= 1:
            self.stderr.write(f'Done!\n{deleted} instance(s) deleted.')
        if bad:
            raise CommandError(_tool.bad_lines_message(bad, lines))
        if errors:
            raise CommandError(
                f'{errors} of {lines} line(s) failed in the database (see the errors above); '
                'their rows were not deleted. Run the pipeline again once the cause is fixed.'
            )
