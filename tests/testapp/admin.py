"""Admin of the in-process test project (autodiscovered), for the CQRS admin action tests."""

from django.contrib import admin

from dj_cqrs.admin import CQRSAdminMasterSyncMixin
from tests.testapp import models


@admin.register(models.BasicMaster)
class BasicMasterAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    list_display = ('id', 'name')


@admin.register(models.Author)
class AuthorAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    def _cqrs_sync_queryset(self, queryset):
        return queryset.exclude(name__startswith='skip')


@admin.register(models.Publisher)
class PublisherAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):
    actions = None
