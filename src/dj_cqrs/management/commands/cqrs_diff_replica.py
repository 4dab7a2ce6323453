"""``manage.py cqrs_diff_replica`` (replica): second stage of the revision diff (UPSTREAM_SPEC §8.6).

Reads cqrs_diff_master's output on stdin, writes "<line 1>,<queue>" and then a JSON array of the pks
whose replica revision differs (or which are missing), one per input line that has any.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.constants import NO_QUEUE
from dj_cqrs.management.commands import _tool
from dj_cqrs.ops import diff, sync

WHAT = 'the output of cqrs_diff_master'


class Command(BaseCommand):
    stealth_options = ('stdin',)
    help = (
        'Diff of CQRS replica models from master diff stream: reads the output of cqrs_diff_master '
        'on stdin and writes the pks to resync, for cqrs_diff_sync.'
    )

    def handle(self, *args: Any, **options: Any) -> None:
        opened = _tool.open_stream(
            self, options, WHAT, 'diff', lambda h: sync.replica_model(h.cqrs_id, table=True)
        )
        if opened is None:
            return
        stream, header, model = opened
        _tool.answer_lines(
            self,
            stream,
            f'{header.raw},{cqrs_settings.queue or NO_QUEUE}',
            lambda lineno, text: diff.replica_differences(model, lineno, diff.parse_pairs(lineno, text)),
            lambda pks: f'PK to resync: {set(pks)!r}',
        )
