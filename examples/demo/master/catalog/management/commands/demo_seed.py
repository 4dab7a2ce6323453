"""``manage.py demo_seed``: a few categories and items for an empty catalog (published as events)."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from catalog.models import Category, Item
from dj_cqrs.master import outbox

SEED = [
    ('Coffee', 'Espresso beans, 1 kg', Decimal('18.90'), True, 0),
    ('Coffee', 'Hand grinder', Decimal('64.00'), True, 3),
    ('Tea', 'Sencha, 100 g', Decimal('9.50'), False, 10),
]


class Command(BaseCommand):
    help = 'Fills an empty demo catalog with a few items.'

    def handle(self, *args: Any, **options: Any) -> None:
        if Item.objects.exists() or Category.objects.exists():
            self.stdout.write('The catalog is not empty; nothing seeded.')
            return
        start = timezone.now().replace(minute=0, second=0, microsecond=0)
        with transaction.atomic():
            for category_name, name, price, in_stock, days in SEED:
                category, _ = Category.objects.get_or_create(name=category_name)
                Item.objects.create(
                    name=name,
                    category=category,
                    price=price,
                    in_stock=in_stock,
                    available_from=start + dt.timedelta(days=days),
                )
        self._wait_for_confirms()
        self.stdout.write(f'Seeded {len(SEED)} items.')

    @staticmethod
    def _wait_for_confirms(timeout: float = 10.0) -> None:
        """Delivered outbox rows are deleted in batches by a background thread, after the broker's
        (asynchronous) confirms; a command that exits at once would leave them for the relay to
        publish again: harmless duplicates, but noise on the replica's page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outbox.delivered.flush()
            if not outbox.OutboxEvent.objects.exists():
                return
            time.sleep(0.1)
