from django.db import models

from dj_cqrs.mixins import ReplicaMixin


class BenchReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'bench'
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    payload = models.CharField(max_length=200, default='')
