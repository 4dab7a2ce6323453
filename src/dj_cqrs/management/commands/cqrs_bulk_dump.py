"""``manage.py cqrs_bulk_dump`` (master): export a model to a dump file (UPSTREAM_SPEC §8.3)."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import dump, sync
from dj_cqrs.ops.sync import ToolError


class Command(BaseCommand):
    help = (
        'Bulk dump of a CQRS model from master service: line 1 is the CQRS_ID, then one JSON '
        'instance_data per line (no trailing newline). Load it on a replica with cqrs_bulk_load.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _tool.add_cqrs_id(parser, 'master', short='-c')
        parser.add_argument(
            '--output', '-o', default=None, help='Output file for dumping (- for writing to stdout)'
        )
        _tool.add_batch(parser)
        _tool.add_progress(parser, 'stderr')
        parser.add_argument('--force', '-f', action='store_true', default=False, help='Override output file')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = sync.master_model(options['cqrs_id'])
        except ToolError as exc:
            raise CommandError(str(exc))
        path = options['output'] or dump.default_output(model.CQRS_ID)
        progress = _tool.progress_for(self, options, self.stderr)
        if progress.enabled:
            total = model._default_manager.count()
            progress.set_total(total)
            self.stderr.write(f'Processing {total} records with batch size {options["batch"]}')

        def failed(pk: Any, exc: BaseException) -> None:
            self.stderr.write(f'\nDump record failed for pk={pk}: {type(exc).__name__}: {exc}')

        try:
            with _output(self, path, options['force']) as out:
                report = dump.dump(model, out, batch=options['batch'], progress=progress, on_failure=failed)
        except ToolError as exc:
            raise CommandError(str(exc))
        except BrokenPipeError:
            raise _tool.pipe_closed()
        self.stderr.write(
            f'Done!\n{report.saved} instance(s) saved.\n{report.processed} instance(s) processed.'
        )
        if report.failures:
            raise CommandError(
                f'{len(report.failures)} of {report.processed} record(s) could not be serialized and are '
                'missing from the dump (see the errors above).'
            )


def _output(command: BaseCommand, path: str, force: bool) -> Any:
    if path == '-':
        return contextlib.nullcontext(_tool.RawWriter(command.stdout))
    return dump.open_output(path, force=force)
