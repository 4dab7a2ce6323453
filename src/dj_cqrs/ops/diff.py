"""Revision and deleted-rows diffs between a master and a replica (UPSTREAM_SPEC §8.5–8.10).

The stream format is upstream's, line by line, so either end of a pipe may run upstream's commands:

* ``cqrs_diff_master``: ``<CQRS_ID>,<now>`` then, per batch, a JSON array of ``[pk, revision]``;
* ``cqrs_diff_replica``: ``<line 1>,<queue>`` then JSON arrays of the pks to resync;
* ``cqrs_deleted_diff_replica``: ``<CQRS_ID>,<now>`` then JSON arrays of replica pks;
* ``cqrs_deleted_diff_master``: line 1 echoed, then JSON arrays of the pks to delete.

Primary keys that JSON cannot hold (UUIDs) are written as strings and converted back with the
receiving model's pk field, so UUID and string keys work in every stream. Batches are keyset
pages in pk order reading only the pk and revision columns (full instances only when the master
model overrides ``is_sync_instance``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from dj_cqrs.constants import NO_QUEUE
from dj_cqrs.core import codec
from dj_cqrs.management.utils import batch_qs
from dj_cqrs.master.mixins import RawMasterMixin
from dj_cqrs.ops.sync import DEFAULT_BATCH
from dj_cqrs.replica.dispatch import replica_db


class BadLine(Exception):
    """A data line of a stream that cannot be used; ``lineno`` counts from 1 (the header)."""

    def __init__(self, lineno: int, reason: str) -> None:
        super().__init__(f"Input can't be parsed: line {lineno}! {reason}")
        self.lineno = lineno
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """Line 1 of a stream: comma-separated tokens, the CQRS_ID first."""

    raw: str

    @property
    def tokens(self) -> list[str]:
        return self.raw.split(',')

    @property
    def cqrs_id(self) -> str:
        return self.tokens[0].strip()

    @property
    def queue(self) -> str | None:
        """The replica queue cqrs_diff_replica appended (the last of three or more tokens)."""
        tokens = self.tokens
        if len(tokens) < 3 or tokens[-1].strip() in ('', NO_QUEUE):
            return None
        return tokens[-1].strip()


def header_line(cqrs_id: str) -> str:
    return f'{cqrs_id},{timezone.now()}'


def read_header(stream: Any) -> Header | None:
    """Line 1 of ``stream``, or ``None`` when the input is empty (nothing upstream to diff)."""
    first = stream.readline()
    if not first:
        return None
    text = first.strip()
    if not text:
        raise BadLine(1, 'line 1 must be "<CQRS_ID>,<timestamp>[,<queue>]", not an empty line.')
    return Header(text)


def data_lines(stream: Iterable[str]) -> Iterator[tuple[int, str]]:
    """The numbered data lines after the header; blank lines are skipped."""
    for lineno, raw in enumerate(stream, start=2):
        text = raw.strip()
        if text:
            yield lineno, text


def _json_array(lineno: int, text: str) -> list[Any]:
    try:
        value = codec.loads(text)
    except ValueError as exc:
        raise BadLine(lineno, f'not JSON ({exc}).')
    if not isinstance(value, list):
        raise BadLine(lineno, f'a JSON array is expected, not {type(value).__name__}.')
    return value


def _scalar_pk(lineno: int, pk: Any) -> Any:
    if isinstance(pk, (dict, list)) or pk is None or isinstance(pk, bool):
        raise BadLine(lineno, f'{codec.dumps(pk)} is not a primary key.')
    return pk


def parse_pairs(lineno: int, text: str, *, bare_pks: bool = False) -> list[tuple[Any, int | None]]:
    """A ``[[pk, revision], ...]`` line; with ``bare_pks`` plain pks are accepted (revision None)."""
    pairs: list[tuple[Any, int | None]] = []
    for item in _json_array(lineno, text):
        if isinstance(item, list) and len(item) == 2:
            pk, revision = item
            if not isinstance(revision, int) or isinstance(revision, bool):
                raise BadLine(
                    lineno, f'revision {codec.dumps(revision)} of pk {codec.dumps(pk)} is not an integer.'
                )
            pairs.append((_scalar_pk(lineno, pk), revision))
        elif bare_pks and not isinstance(item, list):
            pairs.append((_scalar_pk(lineno, item), None))
        else:
            raise BadLine(lineno, f'{codec.dumps(item)} is not a [pk, revision] pair.')
    return pairs


def parse_pks(lineno: int, text: str) -> list[Any]:
    """A ``[pk, ...]`` line."""
    return [_scalar_pk(lineno, pk) for pk in _json_array(lineno, text)]


def keys(model: Any, lineno: int, pks: Iterable[Any]) -> dict[Any, Any]:
    """``{pk as model's pk field holds it: pk as received}``; bad values raise :class:`BadLine`."""
    field = model._meta.pk
    result = {}
    for pk in pks:
        try:
            key = field.to_python(pk)
        except (ValidationError, TypeError, ValueError) as exc:
            reason = '; '.join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise BadLine(
                lineno, f'pk {codec.dumps(pk)} does not fit {model.__name__}.{field.name}: {reason}'
            )
        result[key] = pk
    return result


def wire_pk(pk: Any) -> Any:
    """A pk as JSON can hold it (UUIDs, dates as strings)."""
    return codec.json_value(pk)


def keyset_values(qs: Any, fields: tuple[str, ...], batch: int = DEFAULT_BATCH) -> Iterator[list[Any]]:
    """``values_list(*fields)`` of ``qs`` (``fields[0]`` is ``'pk'``) in pk-ordered keyset pages:
    one index-friendly query per page, no offsets."""
    if batch <= 0:
        raise ValueError('batch size must be positive.')
    base = qs.order_by('pk').values_list(*fields)
    last: Any = None
    while True:
        page = list((base if last is None else base.filter(pk__gt=last))[:batch])
        if not page:
            return
        yield page
        last = page[-1][0]
        if len(page) < batch:
            return


def filters_sync_instances(model: Any) -> bool:
    """Whether ``model`` overrides ``is_sync_instance`` (then rows must be loaded to decide)."""
    return getattr(model, 'is_sync_instance', None) is not RawMasterMixin.is_sync_instance


# -- master side ------------------------------------------------------------------------------------
def master_revisions(qs: Any, batch: int = DEFAULT_BATCH) -> Iterator[list[tuple[Any, int]]]:
    """``(pk, revision)`` of the rows of ``qs`` that replicas receive (``is_sync_instance``)."""
    if not filters_sync_instances(qs.model):
        yield from keyset_values(qs, ('pk', 'cqrs_revision'), batch)
        return
    for page in batch_qs(qs, batch):
        yield [(obj.pk, obj.cqrs_revision) for obj in page if obj.is_sync_instance()]


def master_present(model: Any, wanted: Iterable[Any]) -> dict[Any, int]:
    """``{pk: revision}`` of the master rows among ``wanted`` (model pk values) that replicas
    receive; rows ``is_sync_instance`` rejects count as absent."""
    wanted = list(wanted)
    if not wanted:
        return {}
    qs = model._default_manager.filter(pk__in=wanted).order_by()
    if not filters_sync_instances(model):
        return dict(qs.values_list('pk', 'cqrs_revision'))
    return {obj.pk: obj.cqrs_revision for obj in qs if obj.is_sync_instance()}


def master_absent(model: Any, lineno: int, pks: list[Any]) -> list[Any]:
    """The pks of a cqrs_deleted_diff_replica line that the master does not have (or does not
    publish): the rows to delete on the replica."""
    received = keys(model, lineno, pks)
    present = master_present(model, received)
    return [pk for key, pk in received.items() if key not in present]


# -- replica side -----------------------------------------------------------------------------------
def replica_differences(model: Any, lineno: int, pairs: list[tuple[Any, int | None]]) -> list[Any]:
    """The master pks of a cqrs_diff_master line whose replica revision differs (missing rows
    count as revision -1), in the master's order and form."""
    revisions = dict(pairs)
    received = keys(model, lineno, revisions)
    stored = dict(
        model._default_manager.db_manager(replica_db(model))
        .filter(pk__in=list(received))
        .order_by()
        .values_list('pk', 'cqrs_revision')
    )
    return [pk for key, pk in received.items() if stored.get(key, -1) != revisions[pk]]


def replica_pks(qs: Any, batch: int = DEFAULT_BATCH) -> Iterator[list[Any]]:
    for page in keyset_values(qs, ('pk',), batch):
        yield [row[0] for row in page]


@dataclass
class DeleteResult:
    deleted: int
    error: str | None = None


def delete_replica_rows(model: Any, lineno: int, pks: list[Any]) -> DeleteResult:
    """Delete the replica rows of ``pks`` in one transaction and leave tombstones, so a stale
    SAVE still in flight cannot bring them back. A database error is returned, not raised."""
    received = keys(model, lineno, pks)
    db = replica_db(model)
    manager = model._default_manager.db_manager(db)
    try:
        with transaction.atomic(using=db):
            rows = list(manager.filter(pk__in=list(received)).order_by().values_list('pk', 'cqrs_revision'))
            if not rows:
                return DeleteResult(0)
            _, per_model = manager.filter(pk__in=[pk for pk, _ in rows]).delete()
            _leave_tombstones(model, rows, db)
    except DatabaseError as exc:
        return DeleteResult(0, str(exc))
    return DeleteResult(per_model.get(model._meta.label, 0))


def _leave_tombstones(model: Any, rows: list[tuple[Any, int]], db: str) -> None:
    from dj_cqrs.replica.tombstones import ReplicaTombstone

    now = timezone.now()
    tombstones = [
        ReplicaTombstone(
            cqrs_id=model.CQRS_ID,
            pk_value=str(pk),
            cqrs_revision=(revision or 0) + 1,
            cqrs_updated=now,
            deleted_at=now,
        )
        for pk, revision in rows
    ]
    try:
        with transaction.atomic(using=db):
            ReplicaTombstone.objects.using(db).bulk_create(
                tombstones,
                update_conflicts=True,
                unique_fields=['cqrs_id', 'pk_value'],
                update_fields=['cqrs_revision', 'cqrs_updated', 'deleted_at'],
            )
    except DatabaseError:
        pass  # no tombstone table (dj_cqrs not migrated here): the rows are deleted all the same
