"""``manage.py cqrs_consume``: run replica consumer processes (UPSTREAM_SPEC §8.1)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dj_cqrs import checks
from dj_cqrs.consumer.supervisor import Supervisor
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.replica.dispatch import replica_db


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f'--workers must be a positive integer, got {value!r}.')
    if number < 1:
        raise CommandError(f'--workers must be a positive integer, got {value!r}.')
    return number


class Command(BaseCommand):
    help = 'Starts CQRS replica consumer worker processes.'
    requires_system_checks = '__all__'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('--workers', '-w', help='Number of workers', type=str, default='1')
        parser.add_argument(
            '--cqrs-id', '-cid', nargs='*', type=str, help='Choose model(s) by CQRS_ID for consuming'
        )
        parser.add_argument(
            '--reload', '-r', action='store_true', default=False, help='Enable reload signal SIGHUP'
        )
        parser.add_argument(
            '--ignore-paths', type=str, default=None, help='Comma-separated directories the reloader ignores'
        )
        parser.add_argument('--sigint-timeout', type=float, default=5, help='Seconds to wait after SIGINT')
        parser.add_argument('--sigkill-timeout', type=float, default=1, help='Seconds to wait after SIGKILL')

    def handle(self, *args: Any, **options: Any) -> None:
        workers = _positive_int(options['workers'])
        cqrs_ids = None
        if options['cqrs_id']:
            cqrs_ids = sorted(set(options['cqrs_id']))
            for cqrs_id in cqrs_ids:
                if ReplicaRegistry.find(cqrs_id) is None:
                    raise CommandError(f'Wrong CQRS ID: {cqrs_id}!')
        for name in ('sigint_timeout', 'sigkill_timeout'):
            if options[name] < 0:
                raise CommandError(f'--{name.replace("_", "-")} must not be negative.')
        problems = checks.check_tables(sorted({replica_db(m) for m in ReplicaRegistry.models.values()}))
        if problems:
            raise CommandError(f'{problems[0].msg} {problems[0].hint}')
        ignore = [p.strip() for p in (options['ignore_paths'] or '').split(',') if p.strip()]
        Supervisor(
            workers=workers,
            cqrs_ids=cqrs_ids,
            sigint_timeout=options['sigint_timeout'],
            sigkill_timeout=options['sigkill_timeout'],
            reload=options['reload'],
            ignore_paths=ignore,
        ).run()
