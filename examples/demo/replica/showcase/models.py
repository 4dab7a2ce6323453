"""The replica's models: read copies of the master's Category and Item, plus pipeline counters."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from dj_cqrs.mixins import ReplicaMixin


class ArrivalHooks:
    """Records when each change arrived (``received_at``), through the replica hooks ``cqrs_create``
    and ``cqrs_update``. A plain mixin: every class built on ``ReplicaMixin`` is a replica, so an
    abstract base would need a ``CQRS_ID`` of its own."""

    @classmethod
    def prepare(cls, mapped_data: dict[str, Any]) -> dict[str, Any]:
        return {**mapped_data, 'received_at': timezone.now()}

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        return super().cqrs_create(sync, cls.prepare(mapped_data), previous_data, meta)  # type: ignore[misc]

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):  # type: ignore[no-untyped-def]
        return super().cqrs_update(sync, self.prepare(mapped_data), previous_data, meta)  # type: ignore[misc]


class CategoryCopy(ArrivalHooks, ReplicaMixin, models.Model):
    CQRS_ID = 'category'

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=60)
    received_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ['name']

    def __str__(self) -> str:
        return self.name


class ItemCopy(ArrivalHooks, ReplicaMixin, models.Model):
    CQRS_ID = 'item'

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    # The master sends the category's id; its copy may arrive later, so no database constraint.
    category = models.ForeignKey(
        CategoryCopy, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name='items'
    )
    price = models.DecimalField(max_digits=10, decimal_places=2)
    in_stock = models.BooleanField(default=True)
    available_from = models.DateTimeField(null=True)
    received_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ['id']

    @classmethod
    def prepare(cls, mapped_data: dict[str, Any]) -> dict[str, Any]:
        data = super().prepare(mapped_data)
        if 'category' in data:
            data['category_id'] = data.pop('category')
        return data

    def __str__(self) -> str:
        return self.name


class PipelineCounter(models.Model):
    """Counts of the replica's lifecycle signals (``dj_cqrs.signals``), written by the consumer."""

    name = models.CharField(max_length=40, primary_key=True)
    value = models.BigIntegerField(default=0)
    last_at = models.DateTimeField(null=True)
    detail = models.TextField(blank=True, default='')

    def __str__(self) -> str:
        return f'{self.name}={self.value}'
