"""``CQRSAdminMasterSyncMixin``: the "synchronize via CQRS" admin action (UPSTREAM_SPEC §2.16)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy

from dj_cqrs.master.serialization import FRESH_ATTR


class CQRSAdminMasterSyncMixin:
    """Mixin for the ``ModelAdmin`` of a master model: adds the ``sync_items`` action.

    Only users with the model's change permission see or run the action.
    """

    def get_actions(self, request: Any) -> Any:
        actions = getattr(self, 'actions', ())
        if actions is not None and 'sync_items' not in actions:
            self.actions = [*actions, 'sync_items']
        return super().get_actions(request)  # type: ignore[misc]

    def _cqrs_sync_queryset(self, queryset: Any) -> Any:
        """Override to narrow or adjust what the action syncs (for example ``select_related``)."""
        return queryset

    def sync_items(self, request: Any, queryset: Any) -> None:
        if not self.has_change_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        items = self._cqrs_sync_queryset(queryset)
        if isinstance(items, QuerySet):
            items = list(items.model.relate_cqrs_serialization(items))
            for item in items:
                item.__dict__[FRESH_ATTR] = True  # loaded just now: published without a reload
        failed_items = [item for item in items if not item.cqrs_sync()]
        failed = len(failed_items)
        ok = len(queryset) - failed
        self.message_user(  # type: ignore[attr-defined]
            request, f'{ok} successfully synced. {failed} failed: {failed_items}'
        )

    sync_items.short_description = gettext_lazy(  # type: ignore[attr-defined]
        'Synchronize selected %(verbose_name_plural)s via CQRS'
    )
    sync_items.allowed_permissions = ('change',)  # type: ignore[attr-defined]


__all__ = ['CQRSAdminMasterSyncMixin']
