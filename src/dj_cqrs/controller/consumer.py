"""``consume(payload)`` (upstream ``dj_cqrs.controller.consumer``): apply one received event."""

from __future__ import annotations

import copy
from typing import Any

from dj_cqrs.replica.dispatch import route_signal_to_replica_model


def consume(payload: Any) -> Any:
    # A deep copy: handlers may change the data without changing what a retry republishes.
    payload = copy.deepcopy(payload)
    return route_signal_to_replica_model(
        payload.signal_type,
        payload.cqrs_id,
        payload.instance_data,
        previous_data=payload.previous_data,
        meta=payload.meta,
        queue=payload.queue,
        reuse_connections=True,
    )


__all__ = ['consume', 'route_signal_to_replica_model']
