"""Delete tombstones: a replica remembers deletes so that late saves do not resurrect rows.

A SAVE or SYNC for a row that is absent is stale when a tombstone for the row is at least as new as
the event's ``cqrs_updated`` (the master changed the row before deleting it). A row re-created
on the master after the delete carries a later ``cqrs_updated`` and is applied.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime


class ReplicaTombstone(models.Model):
    cqrs_id = models.CharField(max_length=255)
    pk_value = models.CharField(max_length=255)
    cqrs_revision = models.IntegerField()
    cqrs_updated = models.DateTimeField(null=True)
    deleted_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        app_label = 'dj_cqrs'
        db_table = 'dj_cqrs_replica_tombstone'
        constraints = [models.UniqueConstraint(fields=['cqrs_id', 'pk_value'], name='dj_cqrs_tombstone_uniq')]

    def __str__(self) -> str:
        return f'{self.cqrs_id}:{self.pk_value}@{self.cqrs_revision}'


def as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            return None
        if parsed is None:
            return None
        result = parsed
    else:
        return None
    if timezone.is_naive(result):
        result = timezone.make_aware(result, timezone.get_default_timezone())
    return result


def is_newer(candidate_rev: Any, candidate_updated: Any, rev: Any, updated: Any) -> bool:
    """Whether an event (revision, cqrs_updated) happened after another one.

    Time decides when both timestamps parse (revisions restart at 0 when a row is re-created),
    otherwise the revision does.
    """
    a, b = as_datetime(candidate_updated), as_datetime(updated)
    if a is not None and b is not None:
        return a > b
    try:
        return int(candidate_rev) > int(rev)
    except (TypeError, ValueError):
        return True


def find(model: Any, pk: Any, using: str) -> ReplicaTombstone | None:
    return (
        ReplicaTombstone.objects.using(using)
        .select_for_update()
        .filter(cqrs_id=model.CQRS_ID, pk_value=str(pk))
        .first()
    )


def record(model: Any, pk: Any, revision: Any, updated: Any, using: str) -> None:
    try:
        revision = int(revision)
    except (TypeError, ValueError):
        revision = 0
    tombstone = find(model, pk, using)
    if tombstone is None:
        ReplicaTombstone.objects.using(using).create(
            cqrs_id=model.CQRS_ID, pk_value=str(pk), cqrs_revision=revision, cqrs_updated=as_datetime(updated)
        )
    elif is_newer(revision, updated, tombstone.cqrs_revision, tombstone.cqrs_updated):
        # A late, older delete must not move the tombstone back in time.
        tombstone.cqrs_revision = revision
        tombstone.cqrs_updated = as_datetime(updated)
        tombstone.save(using=using, update_fields=['cqrs_revision', 'cqrs_updated', 'deleted_at'])


def forget(model: Any, pk: Any, using: str) -> None:
    ReplicaTombstone.objects.using(using).filter(cqrs_id=model.CQRS_ID, pk_value=str(pk)).delete()


def prune(older_than: dt.timedelta, using: str = 'default') -> int:
    deleted, _ = (
        ReplicaTombstone.objects.using(using).filter(deleted_at__lt=timezone.now() - older_than).delete()
    )
    return deleted
