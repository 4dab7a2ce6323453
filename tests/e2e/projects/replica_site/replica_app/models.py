from django.db import models

from dj_cqrs.mixins import ReplicaMixin


class HookLog(models.Model):
    """What the replica hooks received (plain Django model, not replicated)."""

    hook = models.CharField(max_length=20)
    cqrs_id = models.CharField(max_length=50)
    pk_value = models.CharField(max_length=50, null=True)
    branch = models.CharField(max_length=20, blank=True, default='')
    sync = models.BooleanField(null=True)
    mapped_data = models.JSONField(null=True)
    previous_data = models.JSONField(null=True)
    meta = models.JSONField(null=True)

    @classmethod
    def record(cls, hook, model, data, previous_data=None, meta=None, sync=None, branch=''):
        pk = data.get(model._meta.pk.name, data.get('id'))
        cls.objects.create(
            hook=hook,
            cqrs_id=model.CQRS_ID,
            pk_value=None if pk is None else str(pk),
            branch=branch,
            sync=sync,
            mapped_data={k: str(v) for k, v in data.items()},
            previous_data=previous_data,
            meta=meta,
        )


class HookRecordingMixin:
    """Records every create/update/delete hook call into HookLog, then does the default work."""

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):
        HookLog.record('create', cls, mapped_data, previous_data, meta, sync)
        return super().cqrs_create(sync, mapped_data, previous_data, meta)

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):
        HookLog.record('update', type(self), mapped_data, previous_data, meta, sync)
        return super().cqrs_update(sync, mapped_data, previous_data, meta)

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        HookLog.record('delete', cls, master_data, None, meta)
        return super().cqrs_delete(master_data, meta=meta)


class MyReplicaModel(ReplicaMixin, models.Model):
    CQRS_ID = 'my_model'
    my_field = models.CharField(max_length=100)


class PublisherReplica(ReplicaMixin, models.Model):
    """Replica of 'publisher' through CQRS_MAPPING (renamed pk and field)."""

    CQRS_ID = 'publisher'
    CQRS_MAPPING = {'id': 'ext_id', 'name': 'title'}
    ext_id = models.IntegerField(primary_key=True)
    title = models.CharField(max_length=100)


class TypedReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'typed'
    char_field = models.CharField(max_length=200)
    int_field = models.IntegerField(default=0)
    dec_field = models.DecimalField(max_digits=20, decimal_places=6)
    dt_field = models.DateTimeField()
    bool_field = models.BooleanField(default=False)
    uuid_field = models.UUIDField()
    nullable_field = models.CharField(max_length=50, null=True, blank=True)
    publisher = models.IntegerField(null=True, blank=True)


class MetaReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'meta'
    CQRS_META = True
    owner = models.CharField(max_length=50)
    title = models.CharField(max_length=100)

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):
        HookLog.record('create', cls, mapped_data, previous_data, meta, sync)
        return super().cqrs_create(sync, mapped_data, previous_data, meta)

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):
        if meta and not meta['access']['owner']:
            # Call asynchronously external system to update some resource.
            HookLog.record('update', type(self), mapped_data, previous_data, meta, sync, 'others')
        else:
            # Call asynchronously internal system to update some resource.
            HookLog.record('update', type(self), mapped_data, previous_data, meta, sync, 'owner')
        return super().cqrs_update(sync, mapped_data, previous_data, meta)

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        HookLog.record('delete', cls, master_data, None, meta)
        return super().cqrs_delete(master_data, meta=meta)


class TrackedReplica(HookRecordingMixin, ReplicaMixin, models.Model):
    CQRS_ID = 'tracked'
    CQRS_META = True
    title = models.CharField(max_length=100)
    counter = models.IntegerField(default=0)
    note = models.CharField(max_length=100, blank=True, default='')


class SerializedReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'serialized'
    name = models.CharField(max_length=100)
    name_upper = models.CharField(max_length=100)
    publisher_name = models.CharField(max_length=100, null=True, blank=True)
