"""``manage.py cqrs_deleted_diff_master`` (master): second stage of the deleted-rows diff
(UPSTREAM_SPEC §8.9, fixed).

Reads cqrs_deleted_diff_replica's output on stdin, echoes line 1, and writes for each line the pks
the master does not have, or has but does not publish (``is_sync_instance()`` is false): the rows
the replica should not hold.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import diff, sync

WHAT = 'the output of cqrs_deleted_diff_replica'


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Diff of deleted CQRS models pks from replica diff stream: reads the output of '
        'cqrs_deleted_diff_replica on stdin and writes the pks to delete, for cqrs_deleted_sync_replica.'
    )

    def handle(self, *args: Any, **options: Any) -> None:
        opened = _tool.open_stream(self, options, WHAT, 'diff', lambda h: sync.master_model(h.cqrs_id))
        if opened is None:
            return
        stream, header, model = opened
        _tool.answer_lines(
            self,
            stream,
            header.raw,
            lambda lineno, text: diff.master_absent(model, lineno, diff.parse_pks(lineno, text)),
            lambda pks: f'PK to delete: {pks!r}',
        )
