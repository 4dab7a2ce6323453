"""``manage.py cqrs_dead_letters {dump|retry|purge|count}`` (UPSTREAM_SPEC §8.11)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs.core import codec
from dj_cqrs.ops import dead_letters
from dj_cqrs.transport import get_transport


class Command(BaseCommand):
    help = 'CQRS dead letters management: dump, retry, purge or count the dead-letter queue.'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('command', choices=['retry', 'dump', 'purge', 'count'])

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            broker = dead_letters.broker_of(get_transport())
        except dead_letters.DeadLettersUnavailable as exc:
            raise CommandError(str(exc))
        command = options['command']
        if command == 'count':
            self.stdout.write(str(dead_letters.count(broker)))
        elif command == 'dump':
            dead_letters.dump(broker, self.stdout.write)
        elif command == 'purge':
            total = dead_letters.count(broker)
            self.stdout.write(f'Total dead letters: {total}')
            if total:
                dead_letters.purge(broker)
                self.stdout.write('Purged')
        else:
            self._retry(broker)

    def _retry(self, broker: Any) -> None:
        announced = False

        def progress(index: int, total: int, body: dict[str, Any] | None, skipped: str | None) -> None:
            nonlocal announced
            if not announced:
                self.stdout.write(f'Total dead letters: {total}')
                announced = True
            self.stdout.write(f'Retrying: {index}/{total}')
            if body is not None:
                self.stdout.write(codec.dumps(body))
            else:
                self.stderr.write(f'Skipped (left in the dead-letter queue): {skipped}')

        report = dead_letters.retry(broker, progress)
        if not announced:
            self.stdout.write(f'Total dead letters: {report.total}')
