"""Mapping of master data onto replica fields (UPSTREAM_SPEC §6.3)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger('django-cqrs')

SYNC_FIELDS = ('cqrs_revision', 'cqrs_updated')


def field_names(model: Any) -> set[str]:
    cached = model.__dict__.get('_cqrs_field_names')
    if cached is None:
        cached = {f.name for f in model._meta.fields}
        model._cqrs_field_names = cached
    return cached


def required_field_names(model: Any) -> list[str]:
    cached = model.__dict__.get('_cqrs_required_fields')
    if cached is None:
        cached = [f.name for f in model._meta.fields if not f.null]
        model._cqrs_required_fields = cached
    return cached


def map_save_data(model: Any, master_data: Any) -> dict[str, Any] | None:
    cqrs_id = model.CQRS_ID
    if not isinstance(master_data, dict) or not all(k in master_data for k in SYNC_FIELDS):
        logger.error('CQRS sync fields are not provided in data (%s).', cqrs_id)
        return None
    mapping = model.CQRS_MAPPING
    if mapping is None:
        result = master_data
    else:
        result = {k: master_data[k] for k in SYNC_FIELDS}
        for master_name, replica_name in mapping.items():
            if master_name not in master_data:
                logger.error('Bad master-replica mapping for %s (%s).', master_name, cqrs_id)
                return None
            result[replica_name] = master_data[master_name]
    if model._meta.pk.name not in result:
        logger.error('CQRS PK is not provided in data (%s).', cqrs_id)
        return None
    if model.CQRS_CUSTOM_SERIALIZATION:
        return dict(result)
    names = field_names(model)
    mapped = {k: v for k, v in result.items() if k in names}
    if not all(name in mapped for name in required_field_names(model)):
        logger.error('Not all required CQRS fields are provided in data (%s).', cqrs_id)
        return None
    return mapped


def map_previous_data(model: Any, previous_data: Any) -> dict[str, Any] | None:
    if not previous_data:
        return None
    mapping = model.CQRS_MAPPING
    if mapping is None:
        return previous_data  # type: ignore[no-any-return]
    names = field_names(model)
    result = {mapping[k]: v for k, v in previous_data.items() if k in mapping}
    return {k: v for k, v in result.items() if k in names} or None


def map_delete_data(model: Any, master_data: Any) -> dict[str, Any] | None:
    cqrs_id = model.CQRS_ID
    if not isinstance(master_data, dict) or 'id' not in master_data:
        logger.error('CQRS PK is not provided in data (%s).', cqrs_id)
        return None
    if not all(k in master_data for k in SYNC_FIELDS):
        logger.error('CQRS sync fields are not provided in data (%s).', cqrs_id)
        return None
    return {
        model._meta.pk.name: master_data['id'],
        'cqrs_revision': master_data['cqrs_revision'],
        'cqrs_updated': master_data['cqrs_updated'],
    }
