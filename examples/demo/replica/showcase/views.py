"""The replica's page: its copy of the catalog, refreshed live, and the pipeline's state."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from typing import Any

from demo_common import describe_transport
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from dj_cqrs.ops import status as ops_status
from showcase.models import CategoryCopy, ItemCopy, PipelineCounter

CACHE_SECONDS = 1.5
_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def _cached(key: str, compute: Any) -> Any:
    """Broker and master round trips at most every CACHE_SECONDS, however many pages poll."""
    with _lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        value = compute()
        _cache[key] = (time.monotonic(), value)
        return value


def _master() -> dict[str, Any]:
    url = os.environ.get('CQRS_DEMO_MASTER_URL', '').rstrip('/')
    if not url:
        return {'reachable': False}
    try:
        with urllib.request.urlopen(f'{url}/api/status.json', timeout=1) as response:
            return {'reachable': True, **json.loads(response.read())}
    except (OSError, ValueError):
        return {'reachable': False}


def _broker() -> dict[str, Any]:
    report = ops_status.replica_status()
    data = ops_status.Status(replica=report).to_dict()['replica']
    return {
        'queue': data['queue_status'],
        'dead_letters': data['dead_letters'],
        'delay_queues': data['delay_queues'],
        'models': data['models'],
        'error': data['error'],
    }


def _items() -> list[dict[str, Any]]:
    rows = []
    for item in ItemCopy.objects.select_related('category'):
        rows.append(
            {
                'id': item.pk,
                'name': item.name,
                'category': item.category.name if item.category else None,
                'category_id': item.category_id,
                'price': str(item.price),
                'in_stock': item.in_stock,
                'available_from': item.available_from.isoformat() if item.available_from else None,
                'cqrs_revision': item.cqrs_revision,
                'cqrs_updated': item.cqrs_updated.isoformat(),
                'received_at': item.received_at.isoformat() if item.received_at else None,
            }
        )
    return rows


def state(request: HttpRequest) -> JsonResponse:
    counters = {
        c.name: {
            'value': c.value,
            'last_at': c.last_at.isoformat() if c.last_at else None,
            'detail': c.detail,
        }
        for c in PipelineCounter.objects.all()
    }
    return JsonResponse(
        {
            'items': _items(),
            'categories': [
                {'id': c.pk, 'name': c.name, 'cqrs_revision': c.cqrs_revision}
                for c in CategoryCopy.objects.all()
            ],
            'counters': counters,
            'broker': _cached('broker', _broker),
            'master': _cached('master', _master),
        }
    )


def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        'showcase/index.html',
        {
            'transport': describe_transport(),
            'master_url': os.environ.get('CQRS_DEMO_MASTER_URL', ''),
            'items': ItemCopy.objects.select_related('category'),
        },
    )
