"""Public signals (upstream ``dj_cqrs.signals``).

``post_bulk_create`` and ``post_update`` are sent by ``MasterManager`` with ``sender=<model>``,
``instances=<list>`` and ``using=<alias>``.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

post_bulk_create = Signal()
post_update = Signal()


def __getattr__(name: str) -> Any:
    if name == 'MasterSignals':
        from dj_cqrs.master.handlers import MasterSignals

        return MasterSignals
    raise AttributeError(name)
