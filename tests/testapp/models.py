"""Models of the in-process test suite: one service that is master and replica of the same ids."""

import uuid

from django.db import models

from dj_cqrs.metas import MasterMeta, ReplicaMeta
from dj_cqrs.mixins import MasterMixin, RawMasterMixin, RawReplicaMixin, ReplicaMixin


class BasicMaster(MasterMixin, models.Model):
    CQRS_ID = 'basic'
    name = models.CharField(max_length=100)
    counter = models.IntegerField(default=0)


class Publisher(MasterMixin, models.Model):
    CQRS_ID = 'publisher'
    name = models.CharField(max_length=100)


class TypedMaster(MasterMixin, models.Model):
    CQRS_ID = 'typed'
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    char = models.CharField(max_length=100, default='')
    integer = models.IntegerField(default=0)
    amount = models.DecimalField(max_digits=30, decimal_places=10, default=0)
    when = models.DateTimeField(null=True)
    day = models.DateField(null=True)
    flag = models.BooleanField(default=False)
    maybe = models.CharField(max_length=20, null=True)
    publisher = models.ForeignKey(Publisher, null=True, on_delete=models.SET_NULL)


class TrackedMaster(MasterMixin, models.Model):
    CQRS_ID = 'tracked'
    CQRS_TRACKED_FIELDS = '__all__'
    char_field = models.CharField(max_length=100, default='')
    publisher = models.ForeignKey(Publisher, null=True, on_delete=models.SET_NULL)


class FilteredMaster(MasterMixin, models.Model):
    CQRS_ID = 'filtered'
    name = models.CharField(max_length=100)

    def is_sync_instance(self):
        return not self.name.startswith('hidden')

    def get_custom_cqrs_delete_data(self):
        return {'name': self.name}


class NoProduceMaster(MasterMixin, models.Model):
    CQRS_ID = 'no_produce'
    CQRS_PRODUCE = False
    name = models.CharField(max_length=100)


class Author(MasterMixin, models.Model):
    CQRS_ID = 'author'
    CQRS_SERIALIZER = 'tests.testapp.serializers.AuthorSerializer'
    name = models.CharField(max_length=100)
    publisher = models.ForeignKey(Publisher, null=True, on_delete=models.SET_NULL)

    @classmethod
    def relate_cqrs_serialization(cls, queryset):
        return queryset.select_related('publisher').prefetch_related('books')


class Book(models.Model):
    title = models.CharField(max_length=100)
    author = models.ForeignKey(Author, related_name='books', on_delete=models.CASCADE)


class FieldsMaster(MasterMixin, models.Model):
    CQRS_ID = 'fields'
    CQRS_FIELDS = ('id', 'name')
    name = models.CharField(max_length=100)
    secret = models.CharField(max_length=100, default='s')


class RawMaster(RawMasterMixin, models.Model):
    CQRS_ID = 'raw_master'
    name = models.CharField(max_length=100)


MasterMeta.register(RawMaster)


class OtherDbMaster(MasterMixin, models.Model):
    """Lives on the ``replica_db`` alias (see tests.routers)."""

    CQRS_ID = 'other_db'
    name = models.CharField(max_length=100)


# -- replicas -----------------------------------------------------------------------------------
class BasicReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'basic'
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    counter = models.IntegerField()


class TypedReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'typed'
    id = models.UUIDField(primary_key=True)
    char = models.CharField(max_length=100)
    integer = models.IntegerField()
    amount = models.DecimalField(max_digits=30, decimal_places=10)
    when = models.DateTimeField(null=True)
    day = models.DateField(null=True)
    flag = models.BooleanField()
    maybe = models.CharField(max_length=20, null=True)
    publisher = models.IntegerField(null=True)


class HookLog(models.Model):
    cqrs_id = models.CharField(max_length=50)
    action = models.CharField(max_length=20)
    sync = models.BooleanField(null=True)
    meta = models.JSONField(null=True)
    previous_data = models.JSONField(null=True)
    data = models.JSONField(null=True)


class TrackedReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'tracked'
    CQRS_META = True
    CQRS_MAPPING = {'id': 'id', 'char_field': 'text', 'publisher': 'publisher_id_value'}
    id = models.IntegerField(primary_key=True)
    text = models.CharField(max_length=100)
    publisher_id_value = models.IntegerField(null=True)

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):
        HookLog.objects.create(
            cqrs_id=cls.CQRS_ID, action='create', sync=sync, meta=meta, previous_data=previous_data
        )
        return super().cqrs_create(sync, mapped_data, previous_data=previous_data, meta=meta)

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):
        HookLog.objects.create(
            cqrs_id=self.CQRS_ID, action='update', sync=sync, meta=meta, previous_data=previous_data
        )
        return super().cqrs_update(sync, mapped_data, previous_data=previous_data, meta=meta)

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        HookLog.objects.create(cqrs_id=cls.CQRS_ID, action='delete', meta=meta, data=master_data)
        return super().cqrs_delete(master_data, meta=meta)


class AuthorReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'author'
    CQRS_CUSTOM_SERIALIZATION = True
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)
    publisher_name = models.CharField(max_length=100, null=True)
    books = models.JSONField(default=list)

    @classmethod
    def cqrs_create(cls, sync, mapped_data, previous_data=None, meta=None):
        return cls.objects.create(**cls._fields_of(mapped_data))

    def cqrs_update(self, sync, mapped_data, previous_data=None, meta=None):
        for key, value in self._fields_of(mapped_data).items():
            setattr(self, key, value)
        self.save()
        return self

    @staticmethod
    def _fields_of(data):
        publisher = data.get('publisher')
        return {
            'id': data['id'],
            'name': data['name'],
            'publisher_name': publisher['name'] if publisher else None,
            'books': data.get('books', []),
            'cqrs_revision': data['cqrs_revision'],
            'cqrs_updated': data['cqrs_updated'],
        }


class FilteredReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'filtered'
    CQRS_ONLY_DIRECT_SYNCS = True
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)


class FieldsReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'fields'
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)


class CacheReplica(RawReplicaMixin):
    """A replica that is not a model: it keeps the data in a dict."""

    CQRS_ID = 'raw_master'
    store: dict = {}

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):
        cls.store[master_data['id']] = master_data
        return True

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        cls.store.pop(master_data['id'], None)
        return True


ReplicaMeta.register(CacheReplica)


class TablelessReplica(ReplicaMixin):
    CQRS_ID = 'no_produce'
    CQRS_NO_DB_OPERATIONS = True
    received: list = []

    class Meta:
        abstract = True

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):
        cls.received.append(master_data)
        return True

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        return True


class OtherDbReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'other_db'
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=100)


class CodeMaster(MasterMixin, models.Model):
    """A string primary key that is not called ``id`` (the tools select rows by ``pk``)."""

    CQRS_ID = 'code'
    code = models.CharField(max_length=50, primary_key=True)
    name = models.CharField(max_length=100)


class CodeReplica(ReplicaMixin, models.Model):
    CQRS_ID = 'code'
    code = models.CharField(max_length=50, primary_key=True)
    name = models.CharField(max_length=100)


class FileFlakyReplica(RawReplicaMixin):
    """A replica that keeps its state in files, so separate consumer processes share it: each
    attempt is a line in ``$CQRS_TEST_FLAKY_DIR/attempts``; an event fails while its ``fail`` count
    of attempts is not reached; applied events are lines in ``applied``."""

    CQRS_ID = 'file_flaky'

    @classmethod
    def _path(cls, name):
        import os
        from pathlib import Path

        return Path(os.environ['CQRS_TEST_FLAKY_DIR']) / name

    @classmethod
    def cqrs_save(cls, master_data, previous_data=None, sync=False, meta=None):
        pk = master_data['id']
        with cls._path('attempts').open('a') as f:
            f.write(f'{pk}\n')
        attempts = cls._path('attempts').read_text().split().count(str(pk))
        if attempts <= master_data['fail']:
            raise RuntimeError(f'failure {attempts} of {pk}')
        with cls._path('applied').open('a') as f:
            f.write(f'{pk}\n')
        return True

    @classmethod
    def cqrs_delete(cls, master_data, meta=None):
        return True


ReplicaMeta.register(FileFlakyReplica)


class ProxyMaster(BasicMaster):
    """A proxy: its saves publish as the concrete model's CQRS_ID."""

    class Meta:
        proxy = True


class ChildMaster(BasicMaster):
    """Multi-table inheritance: the parent row is its own statement, so no fused outbox write."""

    CQRS_ID = 'child'
    extra = models.CharField(max_length=20, default='')
