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


# Lifecycle signals of ours. Each carries the event as ``payload`` (a TransportPayload).
#: A master event was confirmed by the broker. ``sender`` is the transport class.
event_published = Signal()
#: A master event was not confirmed; ``error`` says why (with the outbox on, it stays there).
event_publish_failed = Signal()
#: A replica applied an event (after the commit). ``sender`` is the replica class.
event_applied = Signal()
#: A replica acknowledged an event without applying it: older, duplicate, or hidden by a delete
#: tombstone; ``reason`` says which.
event_skipped = Signal()
#: A replica sent a message to its dead-letter queue; ``reason`` says why. ``sender`` is the replica
#: class, or None when the message could not be decoded (``payload`` is then None, ``body`` the bytes).
event_dead_lettered = Signal()
