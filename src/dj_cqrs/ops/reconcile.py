"""Repair of one CQRS_ID between a master and a replica (``cqrs_reconcile``, ours).

It does the work of both upstream pipelines (the revision diff and the deleted-rows diff) in one
pass, in the same line protocol. The *replica side* streams its rows::

    <CQRS_ID>,<now>[,dry-run],<queue>
    [[pk, revision], ...]            one JSON array per batch, every replica row, pk order

and the *master side* answers: it compares each batch with its own rows and then lists its rows
the replica never mentioned. Rows that differ or are missing on the replica are re-published as
SYNC events to that replica's queue; rows the master does not have (or does not publish,
``is_sync_instance``) get a DELETE event. Every fix travels through the broker, so the replica's
own rules (revision fencing, tombstones, its ``cqrs_*`` hooks) apply to it.

Why the replica speaks first: the master is the side that can publish fixes, so a two-stage pipe
(``replica | master``) is enough; and a delete is decided from the master's database, never from
the absence of a key in a stream, so a cut or partial stream can only cause extra SYNCs, never a
wrong delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from dj_cqrs.constants import NO_QUEUE, SignalType
from dj_cqrs.core import codec
from dj_cqrs.master import publisher
from dj_cqrs.ops import diff
from dj_cqrs.ops.progress import Progress
from dj_cqrs.ops.sync import DEFAULT_BATCH, SyncReport, ToolError, sync_queryset
from dj_cqrs.payload import TransportPayload, get_message_expiration_dt

DRY_RUN_TOKEN = 'dry-run'


def replica_header(cqrs_id: str, queue: str | None, dry_run: bool = False) -> str:
    tokens = [cqrs_id, str(timezone.now())]
    if dry_run:
        tokens.append(DRY_RUN_TOKEN)
    tokens.append(queue or NO_QUEUE)
    return ','.join(tokens)


def replica_stream(
    model: Any, *, queue: str | None, batch: int = DEFAULT_BATCH, dry_run: bool = False
) -> Iterator[str]:
    """The replica side's lines: the header, then ``[[pk, revision], ...]`` per batch."""
    yield replica_header(model.CQRS_ID, queue, dry_run)
    qs = model._default_manager.all().order_by()
    for page in diff.keyset_values(qs, ('pk', 'cqrs_revision'), batch):
        yield codec.dumps([[diff.wire_pk(pk), revision] for pk, revision in page])


def is_dry_run(header: diff.Header) -> bool:
    return DRY_RUN_TOKEN in (t.strip() for t in header.tokens[1:-1])


@dataclass
class ReconcileReport:
    cqrs_id: str
    queue: str | None
    dry_run: bool
    lines: int = 0
    replica_rows: int = 0
    master_rows: int = 0
    differ: list[Any] = field(default_factory=list)
    missing: list[Any] = field(default_factory=list)
    #: (pk, replica revision) of rows to delete on the replica.
    deleted: list[tuple[Any, int | None]] = field(default_factory=list)
    bad_lines: list[diff.BadLine] = field(default_factory=list)
    sync: SyncReport | None = None
    deletes_sent: int = 0
    deletes_failed: list[Any] = field(default_factory=list)

    @property
    def to_sync(self) -> list[Any]:
        return self.differ + self.missing

    @property
    def clean(self) -> bool:
        return not (self.differ or self.missing or self.deleted)


def answer(
    model: Any,
    header: diff.Header,
    lines: Iterable[tuple[int, str]],
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_bad_line: Callable[[diff.BadLine], None] | None = None,
) -> ReconcileReport:
    """The master side: compare the replica's stream with the master rows of ``model``, then
    publish the fixes (unless ``dry_run`` or the stream asked for a dry run)."""
    progress = progress or Progress.disabled()
    report = ReconcileReport(model.CQRS_ID, header.queue, dry_run or is_dry_run(header))
    seen: set[Any] = set()
    for lineno, text in lines:
        report.lines += 1
        try:
            pairs = diff.parse_pairs(lineno, text, bare_pks=True)
            revisions = dict(pairs)
            received = diff.keys(model, lineno, revisions)
        except diff.BadLine as exc:
            report.bad_lines.append(exc)
            if on_bad_line is not None:
                on_bad_line(exc)
            continue
        present = diff.master_present(model, received)
        for key, pk in received.items():
            seen.add(key)
            report.replica_rows += 1
            revision = revisions[pk]
            if key not in present:
                report.deleted.append((pk, revision))
            elif revision is None or present[key] != revision:
                report.differ.append(diff.wire_pk(key))
        progress.advance(len(received))

    qs = model._default_manager.all().order_by()
    for page in diff.master_revisions(qs, batch):
        for pk, _ in page:
            report.master_rows += 1
            if pk not in seen:
                report.missing.append(diff.wire_pk(pk))
    progress.close()

    if report.dry_run:
        return report
    if report.to_sync:
        report.sync = SyncReport()
        to_sync = report.to_sync
        for start in range(0, len(to_sync), batch):
            chunk = to_sync[start : start + batch]
            part = sync_queryset(
                model._default_manager.filter(pk__in=chunk).order_by(), queue=report.queue, batch=batch
            )
            report.sync.total += part.total
            report.sync.processed += part.processed
            report.sync.synced += part.synced
            report.sync.failures.extend(part.failures)
            report.sync.vanished.extend(part.vanished)
            report.sync.unconfirmed += part.unconfirmed
    for pk, revision in report.deleted:
        if publish_delete(model, pk, revision):
            report.deletes_sent += 1
        else:
            report.deletes_failed.append(pk)
    return report


def publish_delete(model: Any, pk: Any, replica_revision: int | None) -> bool:
    """Publish a DELETE for a row the master no longer has (broadcast: transports route only
    SYNC events to a single queue; a replica without the row ignores it)."""
    instance_data = {
        'id': diff.wire_pk(pk),
        'cqrs_revision': (replica_revision or 0) + 1,
        'cqrs_updated': str(timezone.now()),
    }
    payload = TransportPayload(
        SignalType.DELETE,
        model.CQRS_ID,
        instance_data,
        diff.wire_pk(pk),
        expires=get_message_expiration_dt(),
    )
    return publisher.emit(payload, model._default_manager.db)


def in_process(
    master: Any,
    replica: Any,
    *,
    queue: str | None,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ReconcileReport:
    """Both sides in this process (a service that is master and replica of the CQRS_ID)."""
    lines = replica_stream(replica, queue=queue, batch=batch, dry_run=dry_run)
    header = diff.Header(next(lines))
    numbered = ((lineno, text) for lineno, text in enumerate(lines, start=2))
    return answer(master, header, numbered, batch=batch, dry_run=dry_run, progress=progress)


def check_header(header: diff.Header, cqrs_id: str | None) -> None:
    if len(header.tokens) < 3:
        raise ToolError(
            f'Line 1 is {header.raw!r}, not the header of a reconcile stream ("<CQRS_ID>,<time>,<queue>"). '
            'Pipe the replica side into the master side: manage.py cqrs_reconcile replica --cqrs-id '
            f'{cqrs_id or header.cqrs_id} | manage.py cqrs_reconcile master'
        )
    if cqrs_id and header.cqrs_id != cqrs_id:
        raise ToolError(f'The input is the replica stream of {header.cqrs_id}, not of {cqrs_id}.')
