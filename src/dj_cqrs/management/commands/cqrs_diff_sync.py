"""``manage.py cqrs_diff_sync`` (master): last stage of the revision diff (UPSTREAM_SPEC §8.7, fixed).

Reads cqrs_diff_replica's output on stdin and re-publishes the listed rows as SYNC events to the
replica queue named at the end of line 1 (broadcast when it is ``None``), with cqrs_sync's output
for each line. Works without a queue and whatever the master pk is called.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.management.commands import _tool
from dj_cqrs.management.commands.cqrs_sync import failures_message, run
from dj_cqrs.ops import diff, sync
from dj_cqrs.ops.sync import SyncReport, ToolError

WHAT = 'the output of cqrs_diff_replica'


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Diff synchronizer from CQRS replica stream: reads the output of cqrs_diff_replica on stdin '
        'and syncs the listed rows to that replica.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _tool.add_batch(parser)
        _tool.add_progress(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        opened = _tool.open_stream(self, options, WHAT, 'sync', _master_with_queue)
        if opened is None:
            return
        stream, header, model = opened
        bad: list[diff.BadLine] = []
        total = SyncReport()
        lines = 0
        for lineno, text in diff.data_lines(stream):
            lines += 1
            try:
                pks = list(diff.keys(model, lineno, diff.parse_pks(lineno, text)))
            except diff.BadLine as exc:
                bad.append(exc)
                self.stderr.write(str(exc))
                continue
            # by pk, whatever the pk field is called (upstream filters on ``id``)
            qs = model._default_manager.filter(pk__in=pks).order_by()
            report = run(self, qs, options, header.queue)
            if report is not None:
                total.processed += report.processed
                total.failures.extend(report.failures)
                total.unconfirmed += report.unconfirmed
        if bad:
            raise CommandError(_tool.bad_lines_message(bad, lines))
        if total.failures or total.unconfirmed:
            raise CommandError(failures_message(total))


def _master_with_queue(header: Any) -> Any:
    model = sync.master_model(header.cqrs_id)
    if len(header.tokens) < 3:
        raise ToolError(
            f'Line 1 is {header.raw!r}: it has no replica queue, so it is not the output of '
            'cqrs_diff_replica. Run cqrs_diff_master --cqrs-id=X | cqrs_diff_replica | cqrs_diff_sync'
        )
    return model
