"""Shared helpers of the replica-side suites."""

from __future__ import annotations

import datetime as dt

import pytest

from dj_cqrs.controller import consumer
from dj_cqrs.dataclasses import TransportPayload
from dj_cqrs.replica.managers import last_error
from dj_cqrs.testing import wire_roundtrip

db = pytest.mark.django_db
db_tx = pytest.mark.django_db(transaction=True, available_apps=['dj_cqrs', 'tests.testapp'])

T0 = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc)


def ts(minutes: float = 0) -> str:
    """``cqrs_updated`` as masters write it (``str(datetime)``), ``minutes`` after T0."""
    return str(T0 + dt.timedelta(minutes=minutes))


def apply(signal_type, cqrs_id, instance_data, previous_data=None, meta=None, queue=None, instance_pk=None):
    """Deliver one event to the replica the way the consumer does (through the wire codec)."""
    last_error.set(None)
    if instance_pk is None and isinstance(instance_data, dict):
        instance_pk = instance_data.get('id')
    payload = TransportPayload(
        signal_type, cqrs_id, instance_data, instance_pk, queue=queue, previous_data=previous_data, meta=meta
    )
    return consumer.consume(wire_roundtrip(payload))


def basic(pk=1, rev=0, minutes=0, **extra):
    data = {'id': pk, 'name': f'r{rev}', 'counter': rev, 'cqrs_revision': rev, 'cqrs_updated': ts(minutes)}
    data.update(extra)
    return data


def messages(caplog, level=None):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == 'django-cqrs' and (level is None or r.levelname == level)
    ]
