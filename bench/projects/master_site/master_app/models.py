from django.db import models

from dj_cqrs.mixins import MasterMixin


class BenchModel(MasterMixin, models.Model):
    CQRS_ID = 'bench'
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    payload = models.CharField(max_length=200, default='')


class PlainModel(models.Model):
    """The same columns as BenchModel, without the mixin: the baseline of a plain ``save()``."""

    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    payload = models.CharField(max_length=200, default='')
    cqrs_revision = models.IntegerField(default=0)
    cqrs_updated = models.DateTimeField(auto_now=True)
