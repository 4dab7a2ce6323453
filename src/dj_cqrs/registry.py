"""Registries of master and replica models by CQRS_ID (UPSTREAM_SPEC §2.10).

Registering never raises: a missing or duplicate CQRS_ID is kept aside and reported by the models'
system checks (``dj_cqrs.E101``, ``dj_cqrs.E102``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

logger = logging.getLogger('django-cqrs')


class RegistryMixin:
    models: ClassVar[dict[str, Any]]
    #: (cqrs_id, model) pairs that could not be registered because the id was taken.
    duplicates: ClassVar[list[tuple[str, Any]]]
    #: classes registered without a CQRS_ID (reported by the checks).
    missing_id: ClassVar[list[Any]]

    @classmethod
    def register_model(cls, model_cls: Any) -> None:
        cqrs_id = getattr(model_cls, 'CQRS_ID', None)
        if not cqrs_id:
            if model_cls not in cls.missing_id:
                cls.missing_id.append(model_cls)
            return
        existing = cls.models.get(cqrs_id)
        if existing is not None and _same_class(existing, model_cls):
            cls.models[cqrs_id] = model_cls  # re-import of the same module (autoreload, tests)
            return
        if existing is not None:
            cls.duplicates.append((cqrs_id, model_cls))
            return
        cls.models[cqrs_id] = model_cls

    @classmethod
    def get_model_by_cqrs_id(cls, cqrs_id: str) -> Any:
        model = cls.models.get(cqrs_id)
        if model is None:
            logger.error('No model with such CQRS_ID: %s.', cqrs_id)
        return model

    @classmethod
    def find(cls, cqrs_id: str) -> Any:
        """Like :meth:`get_model_by_cqrs_id` without logging a miss."""
        return cls.models.get(cqrs_id)

    @classmethod
    def is_duplicate(cls, model_cls: Any) -> bool:
        return any(model is model_cls for _, model in cls.duplicates)


def _same_class(a: Any, b: Any) -> bool:
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


class MasterRegistry(RegistryMixin):
    models: ClassVar[dict[str, Any]] = {}
    duplicates: ClassVar[list[tuple[str, Any]]] = []
    missing_id: ClassVar[list[Any]] = []


class ReplicaRegistry(RegistryMixin):
    models: ClassVar[dict[str, Any]] = {}
    duplicates: ClassVar[list[tuple[str, Any]]] = []
    missing_id: ClassVar[list[Any]] = []
