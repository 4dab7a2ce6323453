"""``manage.py cqrs_status``: the outbox backlog (master) and the queues and last changes (replica)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from dj_cqrs.ops import status as ops_status
from dj_cqrs.registry import ReplicaRegistry


class Command(BaseCommand):
    help = (
        'Shows the state of the CQRS pipeline of this service: on a master the outbox backlog per '
        'database; on a replica the queue depth and consumers, the dead letters, the delay queues and '
        'the last change applied per CQRS_ID. Exits with an error when a database or the broker '
        'could not be asked (the rest is still shown).'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('--json', action='store_true', default=False, help='Print one JSON object')
        side = parser.add_mutually_exclusive_group()
        side.add_argument('--master', action='store_true', default=False, help='Show the master side only')
        side.add_argument('--replica', action='store_true', default=False, help='Show the replica side only')
        parser.add_argument(
            '--database',
            action='append',
            default=None,
            help='Database alias of an outbox (repeatable; default: every database)',
        )
        parser.add_argument(
            '--cqrs-id',
            '-cid',
            dest='cqrs_id',
            action='append',
            default=None,
            help='Replica model(s) by CQRS_ID (repeatable; default: all)',
        )
        parser.add_argument(
            '--no-broker', action='store_true', default=False, help='Do not ask the broker (database only)'
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for alias in options['database'] or ():
            if alias not in connections:
                raise CommandError(f"Unknown database alias '{alias}': use one of {', '.join(connections)}.")
        for cqrs_id in options['cqrs_id'] or ():
            if ReplicaRegistry.find(cqrs_id) is None:
                raise CommandError(f'Wrong CQRS ID: {cqrs_id}!')
        master = True if options['master'] else (False if options['replica'] else None)
        replica = True if options['replica'] else (False if options['master'] else None)
        report = ops_status.status(
            master=master,
            replica=replica,
            databases=options['database'],
            cqrs_ids=options['cqrs_id'],
            broker_stats=not options['no_broker'],
        )
        if options['json']:
            self.stdout.write(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        else:
            for line in render(report):
                self.stdout.write(line)
        problems = report.errors
        if problems:
            raise CommandError(
                f'{len(problems)} part(s) of the status could not be read: ' + '; '.join(problems)
            )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return '-'
    if seconds < 120:
        return f'{seconds:.0f} s'
    if seconds < 7200:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def _count(value: int | None) -> str:
    return '?' if value is None else str(value)


def render(report: ops_status.Status) -> list[str]:
    """The human-readable form of a status report, one line per item."""
    lines: list[str] = []
    if report.master is None and report.replica is None:
        return ['No CQRS master or replica models in this service.']
    master = report.master
    if master is not None:
        lines.append(f'Master: {", ".join(master.cqrs_ids) or "no master models"}')
        if not master.outbox_enabled:
            lines.append("  outbox: off (CQRS['master']['CQRS_OUTBOX'] = False)")
        elif not master.outboxes:
            lines.append('  outbox: no database has the outbox table (run `manage.py migrate dj_cqrs`)')
        for outbox in master.outboxes:
            if outbox.error:
                lines.append(f'  outbox {outbox.database}: ERROR {outbox.error}')
            elif not outbox.count:
                lines.append(f'  outbox {outbox.database}: empty')
            else:
                age = _age(outbox.oldest_age)
                text = f'  outbox {outbox.database}: {outbox.count} undelivered, the oldest {age} old'
                if outbox.stale:
                    text += (
                        f' (older than CQRS_OUTBOX_WARN_AGE = {master.warn_age} s: is `cqrs_relay` running?)'
                    )
                lines.append(text)
    replica = report.replica
    if replica is not None:
        lines.append(
            f'Replica: queue {replica.queue or "(not set)"}, transport {replica.transport or "(not set)"}'
        )
        if replica.error:
            lines.append(f'  broker: ERROR {replica.error}')
        queue = replica.queue_status
        if queue is not None:
            consumers = _count(queue.consumers)
            lines.append(f'  queue {queue.name}: {_count(queue.messages)} ready, {consumers} consumer(s)')
        if replica.dead_letters is not None:
            dl = replica.dead_letters
            hint = ' (see `manage.py cqrs_dead_letters dump`)' if dl.messages else ''
            lines.append(f'  dead letters {dl.name}: {_count(dl.messages)}{hint}')
        for delay in replica.delay_queues:
            lines.append(f'  delay queue {delay.name}: {_count(delay.messages)} waiting')
        for model in replica.models:
            lines.append(f'  {model.cqrs_id}: {_model_line(model)}')
    return lines


def _model_line(model: ops_status.ModelStatus) -> str:
    if model.error:
        return f'ERROR {model.error}'
    if model.rows is None:
        return f'{model.model} (no database operations)'
    text = f'{model.rows} row(s)'
    if model.last_updated is not None:
        text += (
            f', last change applied: pk {model.last_pk} revision {model.last_revision}'
            f' (master time {model.last_updated.isoformat()})'
        )
    if model.deletes:
        stamp = model.last_deleted_at.isoformat() if model.last_deleted_at else '-'
        text += f', {model.deletes} delete tombstone(s), the last at {stamp}'
    return text
