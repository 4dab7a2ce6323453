"""Replica model mixins (UPSTREAM_SPEC §2.6–2.8)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.base import ModelBase

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.replica.managers import ReplicaManager


class ReplicaMeta(ModelBase):
    """Metaclass of ``ReplicaMixin``: registers every class it creates, abstract ones included
    (table-less replicas are abstract models that override ``cqrs_save`` / ``cqrs_delete``)."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any) -> Any:
        model_cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        if name != 'ReplicaMixin':
            ReplicaMeta.register(model_cls)
        return model_cls

    @staticmethod
    def register(model_cls: Any) -> Any:
        """Register a replica class (a model or any ``RawReplicaMixin`` subclass).

        Returns the class, so it also works as a decorator (upstream returns ``None``). Problems
        are reported by system checks (``dj_cqrs.E1xx``), not raised here.
        """
        ReplicaRegistry.register_model(model_cls)
        return model_cls


class RawReplicaMixin:
    """Base of every replica: models, and classes that store replicated data elsewhere."""

    CQRS_ID: str | None = None
    CQRS_NO_DB_OPERATIONS = True
    CQRS_META = False
    CQRS_ONLY_DIRECT_SYNCS = False
    CQRS_MAPPING: dict[str, str] | None = None

    @classmethod
    def cqrs_save(cls, master_data: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def cqrs_delete(cls, master_data: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def should_retry_cqrs(current_retry: int, exception: BaseException | None = None) -> bool:
        max_retries = cqrs_settings.replica.max_retries
        if max_retries is None:
            return True
        return current_retry < max_retries

    @staticmethod
    def get_cqrs_retry_delay(current_retry: int) -> int:
        return cqrs_settings.replica.retry_delay


class ReplicaMixin(RawReplicaMixin, models.Model, metaclass=ReplicaMeta):
    """Replica model mixin: subclass it with the master's ``CQRS_ID`` and migrate."""

    CQRS_MAPPING: dict[str, str] | None = None
    CQRS_CUSTOM_SERIALIZATION = False
    CQRS_SELECT_FOR_UPDATE = False
    CQRS_NO_DB_OPERATIONS = False
    CQRS_META = False
    CQRS_ONLY_DIRECT_SYNCS = False

    cqrs_revision = models.IntegerField()
    cqrs_updated = models.DateTimeField()

    objects = models.Manager()
    cqrs = ReplicaManager()

    class Meta:
        abstract = True

    @classmethod
    def cqrs_save(
        cls, master_data: Any, previous_data: Any = None, sync: bool = False, meta: Any = None, **kwargs: Any
    ) -> Any:
        if cls.CQRS_NO_DB_OPERATIONS:
            return super().cqrs_save(master_data, previous_data=previous_data, sync=sync, meta=meta)
        return cls.cqrs.save_instance(master_data, previous_data, sync, meta)

    @classmethod
    def cqrs_create(
        cls, sync: bool, mapped_data: dict[str, Any], previous_data: Any = None, meta: Any = None
    ) -> Any:
        return cls._default_manager.create(**mapped_data)

    def cqrs_update(
        self, sync: bool, mapped_data: dict[str, Any], previous_data: Any = None, meta: Any = None
    ) -> Any:
        for key, value in mapped_data.items():
            setattr(self, key, value)
        self.save()
        return self

    @classmethod
    def cqrs_delete(cls, master_data: Any, meta: Any = None, **kwargs: Any) -> Any:
        if cls.CQRS_NO_DB_OPERATIONS:
            return super().cqrs_delete(master_data, meta=meta)
        return cls.cqrs.delete_instance(master_data)

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        from dj_cqrs import checks

        return [*super().check(**kwargs), *checks.replica_model_errors(cls)]
