"""``manage.py cqrs_reconcile``: find and fix every difference of one CQRS_ID between a master and
a replica (rows that differ, are missing, or are deleted), in one pipeline. See --help."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.management.commands import _tool
from dj_cqrs.management.commands.cqrs_sync import failures_message
from dj_cqrs.ops import diff, reconcile, sync
from dj_cqrs.ops.sync import ToolError
from dj_cqrs.registry import MasterRegistry, ReplicaRegistry

WHAT = 'the replica side of cqrs_reconcile'
SHOWN_PKS = 20

HELP = """Reconcile one CQRS_ID between the master and a replica: re-sync rows that differ or are
missing on the replica, delete rows the master no longer has (or no longer publishes).

Between two services, the replica side speaks first and the master side answers and fixes:

  replica$ manage.py cqrs_reconcile replica --cqrs-id X | master$ manage.py cqrs_reconcile master [--dry-run]

The replica side streams "<CQRS_ID>,<now>,<queue>" and its [pk, cqrs_revision] pairs, batch by
batch (read-only). The master side compares them with its rows and publishes the fixes through the
broker to that replica: SYNC events for rows that differ or are missing, DELETE events for rows it
does not have. Deletes are decided from the master's database, never from a key missing in the
stream, so a cut stream can only cause extra SYNCs. The replica applies every fix with its own
revision rules and hooks (its consumer must be running).

In a service that is master and replica of X, "manage.py cqrs_reconcile --cqrs-id X" runs both
sides in-process. --dry-run (on either side) only reports."""


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        import argparse

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            'side',
            nargs='?',
            choices=['replica', 'master', 'replica-side', 'master-side'],
            help='Which side this process is; by default both when the service is master and '
            'replica of the CQRS_ID, else the side it is',
        )
        _tool.add_cqrs_id(parser, 'master or replica', required=False)
        parser.add_argument(
            '--dry-run', action='store_true', default=False, help='Only report what differs; send nothing'
        )
        _tool.add_batch(parser)
        _tool.add_progress(parser, 'stderr')

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_id = options['cqrs_id']
        side = (options['side'] or '').replace('-side', '') or _default_side(cqrs_id)
        try:
            if side == 'replica':
                self._replica(cqrs_id, options)
                return
            if side == 'master':
                report = self._master(cqrs_id, options)
            else:
                master = sync.master_model(cqrs_id)
                replica = sync.replica_model(cqrs_id, table=True)
                report = reconcile.in_process(
                    master,
                    replica,
                    queue=cqrs_settings.queue,
                    batch=options['batch'],
                    dry_run=options['dry_run'],
                    progress=_tool.progress_for(self, options, self.stderr),
                )
        except ToolError as exc:
            raise CommandError(str(exc))
        self._print(report, options)

    def _replica(self, cqrs_id: str | None, options: dict[str, Any]) -> None:
        if not cqrs_id:
            raise ToolError('The replica side needs --cqrs-id: manage.py cqrs_reconcile replica --cqrs-id X')
        model = sync.replica_model(cqrs_id, table=True)
        try:
            for line in reconcile.replica_stream(
                model, queue=cqrs_settings.queue, batch=options['batch'], dry_run=options['dry_run']
            ):
                self.stdout.write(line)
                self.stdout.flush()
        except BrokenPipeError:
            raise _tool.pipe_closed()

    def _master(self, cqrs_id: str | None, options: dict[str, Any]) -> reconcile.ReconcileReport:
        stream = _tool.stdin_of(options)
        _tool.require_piped_stdin(stream, WHAT)
        try:
            header = diff.read_header(stream)
        except diff.BadLine as exc:
            raise ToolError(str(exc))
        if header is None:
            raise ToolError(
                "No input: the master side reads the replica side's stream. Run manage.py "
                'cqrs_reconcile replica --cqrs-id X | manage.py cqrs_reconcile master'
            )
        reconcile.check_header(header, cqrs_id)
        model = sync.master_model(header.cqrs_id)
        return reconcile.answer(
            model,
            header,
            diff.data_lines(stream),
            batch=options['batch'],
            dry_run=options['dry_run'],
            progress=_tool.progress_for(self, options, self.stderr),
            on_bad_line=lambda exc: self.stderr.write(str(exc)),
        )

    def _print(self, report: reconcile.ReconcileReport, options: dict[str, Any]) -> None:
        verbose = options.get('verbosity', 1) >= 2
        out = self.stdout.write
        queue = report.queue or 'every replica (no queue)'
        out(
            f'Reconcile of {report.cqrs_id} with {queue}: {report.replica_rows} replica row(s), '
            f'{report.master_rows} master row(s).'
        )
        out(f'Differ: {_pks(report.differ, verbose)}')
        out(f'Missing on the replica: {_pks(report.missing, verbose)}')
        out(f'Deleted on the master: {_pks([pk for pk, _ in report.deleted], verbose)}')
        if report.dry_run:
            out('Dry run: nothing was sent.')
        else:
            synced = report.sync.synced if report.sync else 0
            out(f'Done!\n{synced} instance(s) synced.\n{report.deletes_sent} delete(s) sent.')
        problems = []
        if report.bad_lines:
            problems.append(_tool.bad_lines_message(report.bad_lines, report.lines))
        if report.sync and (report.sync.failures or report.sync.unconfirmed):
            problems.append(failures_message(report.sync))
        if report.deletes_failed:
            problems.append(
                f'{len(report.deletes_failed)} DELETE event(s) could not be published: '
                f'{report.deletes_failed!r}.'
            )
        if problems:
            raise CommandError(' '.join(problems))


def _pks(pks: list[Any], verbose: bool) -> str:
    if not pks:
        return '0'
    shown = pks if verbose or len(pks) <= SHOWN_PKS else pks[:SHOWN_PKS]
    more = '' if len(shown) == len(pks) else f', ... ({len(pks) - len(shown)} more, -v 2 lists all)'
    return f'{len(pks)} [{", ".join(map(repr, shown))}{more}]'


def _default_side(cqrs_id: str | None) -> str:
    if not cqrs_id:
        return 'master'
    in_master = MasterRegistry.find(cqrs_id) is not None
    in_replica = ReplicaRegistry.find(cqrs_id) is not None and sync.has_table(ReplicaRegistry.find(cqrs_id))
    if in_master and in_replica:
        return 'both'
    if in_replica:
        return 'replica'
    if in_master:
        return 'master'
    raise CommandError(
        f'Wrong CQRS ID: {cqrs_id}! It is neither a master nor a replica model of this service.'
    )
