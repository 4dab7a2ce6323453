"""``manage.py cqrs_diff_master`` (master): first stage of the revision diff (UPSTREAM_SPEC §8.5).

cqrs_diff_master --cqrs-id=X | cqrs_diff_replica | cqrs_diff_sync
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.core import codec
from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import diff, sync
from dj_cqrs.ops.sync import ToolError


class Command(BaseCommand):
    help = (
        'Streaming diff of CQRS models from master service: writes "<CQRS_ID>,<now>" and then one '
        'JSON array of [pk, cqrs_revision] per batch. Pipe it into cqrs_diff_replica.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _tool.add_cqrs_id(parser, 'master')
        _tool.add_filter(parser)
        _tool.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = sync.master_model(options['cqrs_id'])
            kwargs = sync.parse_filter(options['filter'])
            qs = sync.filtered(model, kwargs or {})
        except ToolError as exc:
            raise CommandError(str(exc))
        if not qs.exists():
            self.stderr.write('No objects found for filter!')
            return
        try:
            self.stdout.write(diff.header_line(model.CQRS_ID))
            for page in diff.master_revisions(qs, options['batch']):
                self.stdout.write(codec.dumps([[diff.wire_pk(pk), rev] for pk, rev in page]))
                self.stdout.flush()
        except BrokenPipeError:
            raise _tool.pipe_closed()
