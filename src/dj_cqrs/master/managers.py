"""``MasterManager``: bulk operations that emit events (UPSTREAM_SPEC §2.4, §4.10)."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from dj_cqrs.constants import TRACKED_FIELDS_ATTR_NAME
from dj_cqrs.master.serialization import FRESH_ATTR
from dj_cqrs.master.tracking import get_tracker


class MasterManager(models.Manager):
    def bulk_create(self, objs: Any, **kwargs: Any) -> list[Any]:
        """Django's ``bulk_create`` plus one SAVE event per created object."""
        objs = list(objs)  # a generator would be used up by the tracker pass (upstream quirk)
        for obj in objs:
            obj.save_tracked_fields()
        for obj in objs:
            obj.__dict__[FRESH_ATTR] = True  # serialized from memory: no re-read per object
        with transaction.atomic(using=self.db, savepoint=False):
            result = super().bulk_create(objs, **kwargs)
            if result:
                self.model.call_post_bulk_create(result, using=self.db)
        return result

    def bulk_update(self, queryset: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """``Model.cqrs.bulk_update(queryset, **values)``: one UPDATE, one SAVE event per row.

        The revision is bumped in the database. Called Django's way (``objs, fields``), it is
        Django's ``bulk_update`` and emits nothing.
        """
        if not isinstance(queryset, QuerySet):
            return super().bulk_update(queryset, *args, **kwargs)
        model = self.model
        db = queryset.db
        manager = model._default_manager.db_manager(db)
        tracker = get_tracker(model)
        with transaction.atomic(using=db, savepoint=False):
            # Listed inside the transaction and updated by that list, so rows that start
            # matching meanwhile are not updated without an event (upstream race).
            pks = list(queryset.order_by().values_list('pk', flat=True))
            if not pks:
                return 0
            previous: dict[Any, Any] = {}
            if tracker is not None:
                previous = {obj.pk: tracker.current(obj) for obj in manager.filter(pk__in=pks)}
            updated = manager.filter(pk__in=pks).update(
                cqrs_revision=F('cqrs_revision') + 1, cqrs_updated=timezone.now(), **kwargs
            )
            objs = list(manager.filter(pk__in=pks))
            for obj in objs:
                obj.__dict__[FRESH_ATTR] = True
            if tracker is not None:
                for obj in objs:
                    setattr(obj, TRACKED_FIELDS_ATTR_NAME, previous.get(obj.pk))
            model.call_post_update(objs, using=db)
        return updated
