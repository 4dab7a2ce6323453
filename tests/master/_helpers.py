"""Shared helpers of the master-side suites."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings

#: Every master test needs on_commit to run for real (LoopbackTransport publishes at commit).
APPS = ['dj_cqrs', 'tests.testapp']
db_tx = pytest.mark.django_db(transaction=True, available_apps=APPS)
db_tx_multi = pytest.mark.django_db(
    transaction=True, databases=['default', 'replica_db'], available_apps=APPS
)


def db_revision(model, pk, using=None):
    qs = model.objects.using(using) if using else model.objects
    return qs.filter(pk=pk).values_list('cqrs_revision', flat=True).get()


def cqrs_with(**master):
    """A copy of ``settings.CQRS`` with keys of the ``master`` section replaced (for override_settings)."""
    value = copy.deepcopy(settings.CQRS)
    value.setdefault('master', {}).update(master)
    return value


def messages(caplog, level=None):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == 'django-cqrs' and (level is None or r.levelname == level)
    ]
