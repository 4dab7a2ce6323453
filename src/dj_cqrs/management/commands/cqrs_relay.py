"""``manage.py cqrs_relay``: deliver the outbox events the fast path could not publish."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.master import outbox, relay


class Command(BaseCommand):
    help = 'Publishes undelivered CQRS outbox events (safe to run several at once).'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            '--database', default='default', help='Database alias of the outbox (default: default)'
        )
        parser.add_argument('--batch', '-b', type=int, default=500, help='Rows claimed per transaction')
        parser.add_argument(
            '--interval', type=float, default=1.0, help='Seconds between polls of an empty outbox'
        )
        parser.add_argument(
            '--min-age',
            type=float,
            default=relay.GRACE_SECONDS,
            help='Leave rows younger than this to the fast path',
        )
        parser.add_argument('--once', action='store_true', help='Drain until empty, then exit')

    def handle(self, *args: Any, **options: Any) -> None:
        using = options['database']
        if using not in connections:
            raise CommandError(f"Unknown database alias '{using}': use one of {', '.join(connections)}.")
        if options['batch'] <= 0:
            raise CommandError('--batch must be a positive integer.')
        if not outbox.table_exists(using):
            raise CommandError(f"The outbox table is missing in '{using}': run `manage.py migrate dj_cqrs`.")
        if options['once']:
            result = relay.drain_all(using, options['batch'], 0.0)
            self.stdout.write(f'{result.published} event(s) published, {result.skipped} skipped.')
            if result.failed:
                raise CommandError('The broker did not confirm every event; the rest stays in the outbox.')
            return
        self._loop(using, options['batch'], options['interval'], options['min_age'])

    def _loop(self, using: str, batch: int, interval: float, min_age: float) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        next_report = 0.0
        while not stop.is_set():
            result = relay.drain(using, batch, min_age)
            if time.monotonic() >= next_report:
                relay.log_backlog(using, cqrs_settings.master.outbox_warn_age)
                next_report = time.monotonic() + 60
            if result.claimed < batch or result.failed:
                stop.wait(interval)
