"""``dj_cqrs.admin_mixins``: the path upstream's docs name for the admin mixin (a doc bug there)."""

from dj_cqrs.admin import CQRSAdminMasterSyncMixin

__all__ = ['CQRSAdminMasterSyncMixin']
