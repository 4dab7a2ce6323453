"""The master's models: every committed change becomes a CQRS event (outbox row, then broker)."""

from django.db import models
from django.utils import timezone

from dj_cqrs.mixins import MasterMixin


class Category(MasterMixin, models.Model):
    CQRS_ID = 'category'

    name = models.CharField(max_length=60, unique=True)

    class Meta:
        ordering = ['name']
        verbose_name_plural = 'categories'

    def __str__(self) -> str:
        return self.name


class Item(MasterMixin, models.Model):
    CQRS_ID = 'item'

    name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name='items')
    price = models.DecimalField(max_digits=10, decimal_places=2)
    in_stock = models.BooleanField(default=True)
    available_from = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ['id']

    def __str__(self) -> str:
        return self.name
