"""``produce(payload)``: the single function every master event leaves through.

Users' test suites patch ``dj_cqrs.controller.producer.produce``; callers look it up through this
module at call time so such patches keep working.
"""

from __future__ import annotations

from typing import Any

from dj_cqrs import transport
from dj_cqrs.transport.base import DeliveryTicket, current_ticket

__all__ = ['DeliveryTicket', 'current_ticket', 'produce']


def produce(payload: Any) -> Any:
    from dj_cqrs import testing

    if testing.intercept(payload):
        return None
    current = transport.get_transport()
    if current is None:
        raise RuntimeError(
            "CQRS transport is not configured: set settings.CQRS['transport'] (see `manage.py check`)."
        )
    return current.produce(payload)
