"""Upstream import path ``dj_cqrs.utils``."""

from __future__ import annotations

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.core.codec import json_value as get_json_valid_value
from dj_cqrs.master.serialization import bulk_relate_cqrs_serialization
from dj_cqrs.payload import get_message_expiration_dt
from dj_cqrs.replica.dispatch import apply_query_timeouts


def get_delay_queue_max_size() -> int | None:
    if 'replica' not in cqrs_settings.raw:
        return None
    return cqrs_settings.replica.delay_queue_max_size


def get_messages_prefetch_count_per_worker() -> int:
    max_size = get_delay_queue_max_size()
    return 0 if max_size is None else max_size + 1


__all__ = [
    'apply_query_timeouts',
    'bulk_relate_cqrs_serialization',
    'get_delay_queue_max_size',
    'get_json_valid_value',
    'get_message_expiration_dt',
    'get_messages_prefetch_count_per_worker',
]
