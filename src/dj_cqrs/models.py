"""Tables of the ``dj_cqrs`` app (shipped as migrations of the app)."""

from dj_cqrs.master.outbox import OutboxEvent
from dj_cqrs.replica.tombstones import ReplicaTombstone

__all__ = ['OutboxEvent', 'ReplicaTombstone']
