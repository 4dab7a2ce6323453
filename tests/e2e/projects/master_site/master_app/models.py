from django.db import models

from dj_cqrs.mixins import MasterMixin


class MyMasterModel(MasterMixin, models.Model):
    CQRS_ID = 'my_model'  # each model must have its unique CQRS_ID
    my_field = models.CharField(max_length=100)


class Publisher(MasterMixin, models.Model):
    CQRS_ID = 'publisher'
    name = models.CharField(max_length=100)


class TypedModel(MasterMixin, models.Model):
    """One field of every kind the wire format has to carry."""

    CQRS_ID = 'typed'
    char_field = models.CharField(max_length=200)
    int_field = models.IntegerField(default=0)
    dec_field = models.DecimalField(max_digits=20, decimal_places=6)
    dt_field = models.DateTimeField()
    bool_field = models.BooleanField(default=False)
    uuid_field = models.UUIDField()
    nullable_field = models.CharField(max_length=50, null=True, blank=True)
    publisher = models.ForeignKey(Publisher, null=True, blank=True, on_delete=models.PROTECT)


class MetaModel(MasterMixin, models.Model):
    """``get_cqrs_meta`` overridden exactly as the Getting started guide does."""

    CQRS_ID = 'meta'
    owner = models.CharField(max_length=50)
    title = models.CharField(max_length=100)

    def is_owner(self):
        return self.owner == 'me'

    def get_cqrs_meta(self, **kwargs):
        meta = super().get_cqrs_meta(**kwargs)
        if self.is_owner():
            meta['access']['owner'] = True
            meta['access']['others'] = False
        else:
            meta['access']['owner'] = False
            meta['access']['others'] = True
        return meta


class TrackedModel(MasterMixin, models.Model):
    CQRS_ID = 'tracked'
    CQRS_TRACKED_FIELDS = ('title', 'counter')
    title = models.CharField(max_length=100)
    counter = models.IntegerField(default=0)
    note = models.CharField(max_length=100, blank=True, default='')


class SerializedModel(MasterMixin, models.Model):
    CQRS_ID = 'serialized'
    CQRS_SERIALIZER = 'master_app.serializers.SerializedModelSerializer'
    name = models.CharField(max_length=100)
    publisher = models.ForeignKey(Publisher, null=True, blank=True, on_delete=models.PROTECT)

    @classmethod
    def relate_cqrs_serialization(cls, queryset):
        return queryset.select_related('publisher')
