"""``manage.py demo_declare``: declare the replica's queue and bindings on the broker.

The consumer does this when it starts; doing it first means that no event the master publishes
before the consumer is up is unroutable (a topic exchange drops messages no queue is bound for).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from dj_cqrs.consumer.worker import replica_topology
from dj_cqrs.transport import get_transport


class Command(BaseCommand):
    help = "Declares the replica's queue and its bindings."

    def handle(self, *args: Any, **options: Any) -> None:
        topology = replica_topology()
        get_transport().broker().open_consumer(topology, 1).close()
        self.stdout.write(f'Queue {topology.queue} bound for {", ".join(topology.cqrs_ids)}.')
