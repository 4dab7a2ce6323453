"""Tracked fields: the previous values sent as ``previous_data`` (UPSTREAM_SPEC §4.7).

A snapshot of the tracked values is taken when an instance is loaded and after each save; only
models that set ``CQRS_TRACKED_FIELDS`` pay for it. Values are stored JSON-ready (date, datetime and
UUID as ``str``), as upstream does.
"""

from __future__ import annotations

import copy
from typing import Any

from django.db import models
from django.db.models.expressions import Combinable
from django.db.models.signals import post_init

from dj_cqrs.constants import ALL_BASIC_FIELDS, FIELDS_TRACKER_FIELD_NAME
from dj_cqrs.core.codec import json_value

SNAPSHOT_ATTR = '_cqrs_tracked_snapshot'


def _json_valid(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return copy.deepcopy(value)
    return json_value(value)


class CQRSTracker:
    """Tracks the fields named by ``CQRS_TRACKED_FIELDS`` on one model class."""

    def __init__(self, fields: list[str] | tuple[str, ...] | str) -> None:
        self.declared = fields
        self.model: type[models.Model] | None = None
        #: tracker name (attname for relations) -> field name
        self.names: dict[str, str] = {}

    @classmethod
    def add_to_model(cls, model: type[models.Model], fields: Any) -> CQRSTracker:
        tracker = cls(fields)
        tracker.finalize_class(model)
        setattr(model, FIELDS_TRACKER_FIELD_NAME, tracker)
        return tracker

    def finalize_class(self, model: type[models.Model]) -> None:
        self.model = model
        concrete = {f.name: f for f in model._meta.concrete_fields}
        wanted = list(concrete) if self.declared == ALL_BASIC_FIELDS else list(self.declared)
        for name in wanted:
            field = concrete.get(name)
            if field is None:
                continue
            self.names[field.attname if field.is_relation else field.name] = field.name
        post_init.connect(self._on_init, sender=model, weak=False, dispatch_uid=f'cqrs_tracker_{id(self)}')

    def _on_init(self, sender: Any, instance: models.Model, **kwargs: Any) -> None:
        self.snapshot(instance)

    def current(self, instance: models.Model) -> dict[str, Any]:
        deferred = instance.get_deferred_fields()
        return {name: _json_valid(getattr(instance, name)) for name in self.names if name not in deferred}

    def snapshot(self, instance: models.Model) -> None:
        current = self.current(instance)
        previous = instance.__dict__.get(SNAPSHOT_ATTR, {})
        for name, value in current.items():
            if isinstance(value, Combinable):  # not known before it is read back: keep the old one
                current[name] = previous.get(name)
        instance.__dict__[SNAPSHOT_ATTR] = current

    def changed(self, instance: models.Model) -> dict[str, Any]:
        """``{field name: previous value}`` for tracked fields that differ from the snapshot."""
        before = instance.__dict__.get(SNAPSHOT_ATTR, {})
        result = {}
        for name, previous in before.items():
            value = getattr(instance, name)
            if isinstance(value, Combinable) or _json_valid(value) != previous:
                result[self.names[name]] = previous
        return result

    def initial_state(self, instance: models.Model) -> dict[str, Any]:
        """What a new object reports: ``{tracker name: None}`` for each tracked value that is set."""
        return {name: None for name, value in self.current(instance).items() if value is not None}


def get_tracker(model: Any) -> CQRSTracker | None:
    return getattr(model, FIELDS_TRACKER_FIELD_NAME, None)
