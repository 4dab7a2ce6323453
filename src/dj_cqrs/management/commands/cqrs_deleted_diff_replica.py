"""``manage.py cqrs_deleted_diff_replica`` (replica): first stage of the deleted-rows diff
(UPSTREAM_SPEC §8.8).

    cqrs_deleted_diff_replica --cqrs-id=X | cqrs_deleted_diff_master | cqrs_deleted_sync_replica
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
        'Streaming diff of deleted CQRS models from replica service: writes "<CQRS_ID>,<now>" and '
        'then one JSON array of replica pks per batch. Pipe it into cqrs_deleted_diff_master.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _tool.add_cqrs_id(parser, 'replica')
        _tool.add_filter(parser)
        _tool.add_batch(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = sync.replica_model(options['cqrs_id'], table=True)
            kwargs = sync.parse_filter(options['filter'])
            qs = sync.filtered(model, kwargs or {})
        except ToolError as exc:
            raise CommandError(str(exc))
        if not qs.exists():
            self.stderr.write('No objects found for filter!')
            return
        try:
            self.stdout.write(diff.header_line(model.CQRS_ID))
            for pks in diff.replica_pks(qs, options['batch']):
                self.stdout.write(codec.dumps([diff.wire_pk(pk) for pk in pks]))
                self.stdout.flush()
        except BrokenPipeError:
            raise _tool.pipe_closed()
