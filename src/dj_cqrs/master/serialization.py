"""``instance_data`` of SAVE and SYNC events (UPSTREAM_SPEC §4.6, §2.15)."""

from __future__ import annotations

import threading
from contextlib import ContextDecorator
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models.expressions import Combinable
from django.utils.module_loading import import_string

from dj_cqrs.constants import ALL_BASIC_FIELDS
from dj_cqrs.core.codec import json_value
from dj_cqrs.master.tracking import SNAPSHOT_ATTR


class _State(threading.local):
    bulk_relate_cm: Any = None


cqrs_state = _State()


def serialized_fields(model: Any) -> list[models.Field]:
    cached = model.__dict__.get('_cqrs_serialized_fields')
    if cached is None:
        fields = list(model._meta.fields)
        if model.CQRS_FIELDS != ALL_BASIC_FIELDS:
            wanted = set(model.CQRS_FIELDS)
            fields = [f for f in fields if f.name in wanted]
        cached = fields
        model._cqrs_serialized_fields = cached
    return cached


def _wire_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # As a string, so no replica loses digits to a float parser (upstream ones included).
        return str(value)
    return json_value(value) if value is not None else None


def _read_attnames(model: Any) -> list[str]:
    attnames = [f.attname for f in serialized_fields(model)]
    for name in ('cqrs_revision', 'cqrs_updated'):
        if name not in attnames:
            attnames.append(name)
    return attnames


#: Set on an instance, for the duration of its serialization, to its row as read already (with the
#: other rows of its transaction); ``GONE`` if the row no longer exists.
COMMITTED_ATTR = '_cqrs_committed'
GONE: Any = object()


class RowReturning:
    """The columns ``read_committed`` reads, as more columns of a row-writing statement's
    ``RETURNING`` clause (aliased, so they cannot clash with the caller's), and how to turn what
    comes back into the same values (the fields' database converters)."""

    __slots__ = ('attnames', 'converters', 'sql')

    def __init__(self, model: Any, connection: Any) -> None:
        qn = connection.ops.quote_name
        table = model._meta.db_table
        self.attnames = _read_attnames(model)
        fields = [model._meta.get_field(attname) for attname in self.attnames]
        self.sql = ', '.join(
            f'{qn(table)}.{qn(f.column)} AS {qn(f"cqrs_returned_{i}")}' for i, f in enumerate(fields)
        )
        self.converters: list[tuple[int, Any, list[Any]]] = []
        for i, f in enumerate(fields):
            col = f.get_col(table)
            found = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
            if found:
                self.converters.append((i, col, found))

    @classmethod
    def of(cls, model: Any, connection: Any) -> RowReturning:
        key = (model, connection.alias, connection.vendor)
        plan = _returning.get(key)
        if plan is None:
            plan = _returning[key] = cls(model, connection)
        return plan

    def values(self, returned: Any, connection: Any) -> dict[str, Any]:
        """``attname -> value`` of the returned columns (the row as the statement wrote it)."""
        row = list(returned)
        for i, col, converters in self.converters:
            value = row[i]
            for convert in converters:
                value = convert(value, col, connection)
            row[i] = value
        return dict(zip(self.attnames, row))


_returning: dict[tuple[Any, str, str], RowReturning] = {}


def read_committed(model: Any, using: str, pks: list[Any]) -> dict[Any, Any]:
    """The committed rows of ``pks`` in one query: normalized pk -> values (absent pks: ``GONE``)."""
    pk_field = model._meta.pk
    attnames = _read_attnames(model)
    columns = attnames if pk_field.attname in attnames else [*attnames, pk_field.attname]
    found: dict[Any, Any] = dict.fromkeys((pk_field.to_python(pk) for pk in pks), GONE)
    rows = model._default_manager.db_manager(using).filter(pk__in=list(found)).values(*columns)
    for values in rows:
        key = values[pk_field.attname]
        if pk_field.attname not in attnames:
            del values[pk_field.attname]
        found[key] = values
    return found


def committed_values(instance: Any, using: str | None) -> dict[str, Any]:
    """The serialized fields of ``instance``'s row as committed (one SELECT, unless the row was
    read already with the other rows of its transaction: ``COMMITTED_ATTR``).

    F-expressions left on the instance by ``save()`` are replaced by their values. Raises the
    model's ``DoesNotExist`` if the row is gone (deleted later in the same transaction).
    """
    model = type(instance)
    if instance.pk is None:
        raise model.DoesNotExist
    values = instance.__dict__.get(COMMITTED_ATTR)
    if values is None:
        row = (
            model._default_manager.db_manager(using or instance._state.db)
            .filter(pk=instance.pk)
            .values(*_read_attnames(model))
        )
        values = row.first()
    if values is None or values is GONE:
        raise model.DoesNotExist
    resolved = {}
    for attname, value in values.items():
        if isinstance(instance.__dict__.get(attname), Combinable):
            instance.__dict__[attname] = value
            resolved[attname] = value
    if resolved:
        snapshot = instance.__dict__.get(SNAPSHOT_ATTR)
        if snapshot is not None:
            snapshot.update({k: json_value(v) for k, v in resolved.items() if k in snapshot})
    return values


def default_serialization(instance: Any, using: str | None = None, sync: bool = False) -> dict[str, Any]:
    """Saves are serialized from the committed row; syncs (and rows just loaded) from memory."""
    fields = serialized_fields(type(instance))
    if sync or instance.__dict__.get(FRESH_ATTR):
        instance.__dict__.pop(FRESH_ATTR, None)
        data = {f.name: _wire_value(f.value_from_object(instance)) for f in fields}
        data['cqrs_revision'] = instance.cqrs_revision
        data['cqrs_updated'] = str(instance.cqrs_updated)
        return data
    values = committed_values(instance, using)
    data = {f.name: _wire_value(values[f.attname]) for f in fields}
    data['cqrs_revision'] = values['cqrs_revision']
    data['cqrs_updated'] = str(values['cqrs_updated'])
    return data


#: Set on instances whose in-memory state is the committed one (just bulk-created or reloaded).
FRESH_ATTR = '_cqrs_fresh'


def get_serializer_class(model: Any) -> Any:
    cls = model.__dict__.get('_cqrs_serializer_class')
    if cls is None:
        try:
            cls = import_string(model.CQRS_SERIALIZER)
        except ImportError as exc:
            raise ImportError(f"Model {model}: CQRS_SERIALIZER can't be imported.") from exc
        model._cqrs_serializer_class = cls
    return cls


def class_serialization(instance: Any, using: str | None = None, sync: bool = False) -> dict[str, Any]:
    model = type(instance)
    if sync:
        target = instance
    else:
        db = using or instance._state.db
        target = None
        cm = cqrs_state.bulk_relate_cm
        if cm is not None:
            target = cm.get_cached_instance(instance, db)
        if target is None:
            queryset = model._default_manager.using(db)
            target = model.relate_cqrs_serialization(queryset).get(pk=instance.pk)
    data = dict(get_serializer_class(model)(target).data)
    data['cqrs_revision'] = target.cqrs_revision
    data['cqrs_updated'] = str(target.cqrs_updated)
    return data


class BulkRelateSerialization(ContextDecorator):
    """``bulk_relate_cqrs_serialization``: load the serialized instances of a transaction at once."""

    def __init__(self, cqrs_id: str | None = None) -> None:
        self.cqrs_id = cqrs_id
        self._pks: dict[tuple[str, str | None], set[Any]] = {}
        self._cache: dict[str, tuple[str | None, dict[Any, Any]]] = {}
        self._previous: Any = None

    def __enter__(self) -> BulkRelateSerialization:
        self._previous = cqrs_state.bulk_relate_cm
        cqrs_state.bulk_relate_cm = self
        return self

    def __exit__(self, *exc: Any) -> None:
        cqrs_state.bulk_relate_cm = self._previous
        self._pks.clear()
        self._cache.clear()

    def register(self, instance: Any, using: str | None = None) -> None:
        cqrs_id = instance.CQRS_ID
        if self.cqrs_id and self.cqrs_id != cqrs_id:
            return
        self._pks.setdefault((cqrs_id, using), set()).add(instance.pk)

    def get_cached_instance(self, instance: Any, using: str | None = None) -> Any:
        key = (instance.CQRS_ID, using)
        cached = self._cache.get(instance.CQRS_ID)
        if cached is None or cached[0] != using:
            pks = self._pks.get(key)
            if not pks:
                return None
            model = type(instance)
            queryset = model.relate_cqrs_serialization(model._default_manager.using(using))
            cached = (using, {obj.pk: obj for obj in queryset.filter(pk__in=pks)})
            self._cache[instance.CQRS_ID] = cached
        return cached[1].get(instance.pk)


def bulk_relate_cqrs_serialization(cqrs_id: str | None = None) -> BulkRelateSerialization:
    return BulkRelateSerialization(cqrs_id)
