"""``manage.py cqrs_sync`` (master): re-publish filtered rows as SYNC events (UPSTREAM_SPEC §8.2)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import sync
from dj_cqrs.ops.sync import ToolError


class Command(BaseCommand):
    help = (
        'Filter synchronization of certain CQRS model rows over transport to replicas. '
        'Without --filter nothing is synced: pass -f={} for every row.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _tool.add_cqrs_id(parser, 'master')
        _tool.add_filter(parser)
        parser.add_argument('--queue', '-q', default=None, help='Name of the specific replica queue')
        _tool.add_batch(parser)
        _tool.add_progress(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = sync.master_model(options['cqrs_id'])
            kwargs = sync.parse_filter(options['filter'])
            qs = sync.filtered(model, kwargs) if kwargs is not None else None
        except ToolError as exc:
            raise CommandError(str(exc))
        if qs is None:
            self.stderr.write('(No --filter given: pass -f={} to sync every row.)')
        report = run(self, qs, options, options.get('queue'))
        if report is not None and (report.failures or report.unconfirmed):
            raise CommandError(failures_message(report))


def failures_message(report: sync.SyncReport) -> str:
    problems = []
    if report.failures:
        problems.append(
            f'{len(report.failures)} of {report.processed} instance(s) failed to sync (see the errors '
            'above); fix the cause and run the command again for them.'
        )
    if report.unconfirmed:
        problems.append(
            f'{report.unconfirmed} SYNC event(s) were not confirmed by the broker in time: they stay in '
            'the outbox, and manage.py cqrs_relay delivers them.'
        )
    return ' '.join(problems)


def run(command: BaseCommand, qs: Any, options: dict[str, Any], queue: str | None) -> sync.SyncReport | None:
    """The sync of ``qs`` with upstream's output (also what each line of cqrs_diff_sync runs)."""
    total = qs.count() if qs is not None else 0
    if not total:
        command.stdout.write('No objects found for filter!')
        return None
    batch = options['batch']
    progress = _tool.progress_for(command, options, command.stdout, total)
    if progress.enabled:
        command.stdout.write(f'Processing {total} records with batch size {batch}')

    def failed(pk: Any, exc: BaseException) -> None:
        command.stdout.write(f'\nSync record failed for pk={pk}: {type(exc).__name__}: {exc}')

    report = sync.sync_queryset(
        qs, queue=queue, batch=batch, progress=progress, on_failure=failed, total=total
    )
    command.stdout.write(
        f'Done!\n{report.synced} instance(s) synced.\n{report.processed} instance(s) processed.'
    )
    if report.vanished:
        gone = report.vanished
        command.stderr.write(f'{len(gone)} row(s) were deleted during the run: {gone!r}')
    return report
