"""``CQRSAdminMasterSyncMixin`` (UPSTREAM_SPEC §2.16) through the test client and tests/urls.py."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dj_cqrs.testing import capture_events
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = '/admin/testapp/basicmaster/'


@pytest.fixture
def superuser_client(client):
    client.force_login(User.objects.create_superuser('root', 'root@example.com', 'pw'))
    return client


def _staff(client, *codenames):
    user = User.objects.create_user('staff', 'staff@example.com', 'pw', is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def _run_action(client, url, pks):
    return client.post(
        url, {'action': 'sync_items', '_selected_action': [str(pk) for pk in pks]}, follow=True
    )


def _messages(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_action_is_listed_with_its_label(superuser_client):
    m.BasicMaster.objects.create(name='a')
    response = superuser_client.get(CHANGELIST)
    assert response.status_code == 200
    assert re.search(
        r'<option value="sync_items">Synchronize selected basic masters via CQRS</option>',
        response.content.decode(),
    )


def test_action_syncs_the_selected_rows(superuser_client):
    rows = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(3)]
    with capture_events() as events:
        response = _run_action(superuser_client, CHANGELIST, [rows[0].pk, rows[2].pk])
    assert sorted((e.signal_type, e.pk, e.queue) for e in events) == [
        ('SYNC', rows[0].pk, None),
        ('SYNC', rows[2].pk, None),
    ]
    assert _messages(response) == ['2 successfully synced. 0 failed: []']


def test_rows_are_not_reloaded_one_by_one(superuser_client):
    rows = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(3)]
    with CaptureQueriesContext(connection) as queries, capture_events():
        _run_action(superuser_client, CHANGELIST, [r.pk for r in rows])
    per_row = [
        q['sql']
        for q in queries
        if re.search(r'FROM "testapp_basicmaster" WHERE "testapp_basicmaster"."id" = ', q['sql'])
    ]
    assert per_row == []


def test_failed_items_are_reported(superuser_client):
    rows = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(2)]
    real = m.BasicMaster.cqrs_sync

    def sync(self, *args, **kwargs):
        return False if self.pk == rows[1].pk else real(self, *args, **kwargs)

    with mock.patch.object(m.BasicMaster, 'cqrs_sync', sync), capture_events():
        response = _run_action(superuser_client, CHANGELIST, [r.pk for r in rows])
    assert _messages(response) == [
        f'1 successfully synced. 1 failed: [<BasicMaster: BasicMaster object ({rows[1].pk})>]'
    ]


def test_sync_queryset_hook_narrows_what_is_synced(superuser_client):
    kept = m.Author.objects.create(name='kept')
    skipped = m.Author.objects.create(name='skip me')
    with capture_events() as events:
        response = _run_action(superuser_client, '/admin/testapp/author/', [kept.pk, skipped.pk])
    assert [e.pk for e in events] == [kept.pk]
    # as upstream: "ok" counts the selected rows, whatever the hook kept
    assert _messages(response) == ['2 successfully synced. 0 failed: []']


def test_users_without_change_permission_neither_see_nor_run_it(client):
    row = m.BasicMaster.objects.create(name='a')
    viewer = _staff(client, 'view_basicmaster')
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    assert 'sync_items' not in page.content.decode()
    with capture_events() as events:
        _run_action(viewer, CHANGELIST, [row.pk])
    assert events == []


def test_users_with_change_permission_run_it(client):
    row = m.BasicMaster.objects.create(name='a')
    editor = _staff(client, 'view_basicmaster', 'change_basicmaster')
    assert 'sync_items' in editor.get(CHANGELIST).content.decode()
    with capture_events() as events:
        response = _run_action(editor, CHANGELIST, [row.pk])
    assert [e.pk for e in events] == [row.pk]
    assert _messages(response) == ['1 successfully synced. 0 failed: []']


def test_direct_call_without_permission_is_refused(rf):
    from django.core.exceptions import PermissionDenied

    model_admin = admin.site._registry[m.BasicMaster]
    request = rf.post(CHANGELIST)
    request.user = mock.Mock(has_perm=lambda perm, obj=None: False, is_active=True, is_staff=True)
    with pytest.raises(PermissionDenied), capture_events() as events:
        model_admin.sync_items(request, m.BasicMaster.objects.all())
    assert events == []


def test_get_actions(rf, superuser_client):
    request = rf.get(CHANGELIST)
    request.user = User.objects.get(username='root')
    model_admin = admin.site._registry[m.BasicMaster]
    assert 'sync_items' in model_admin.get_actions(request)
    assert list(model_admin.actions).count('sync_items') == 1
    model_admin.get_actions(request)
    assert list(model_admin.actions).count('sync_items') == 1
    assert (
        model_admin.get_actions(request)['sync_items'][2]
        == 'Synchronize selected %(verbose_name_plural)s via CQRS'
    )
    # ``actions = None``: no actions at all
    assert admin.site._registry[m.Publisher].get_actions(request) == {}


def test_import_paths():
    from dj_cqrs import admin as admin_module
    from dj_cqrs import admin_mixins

    assert admin_mixins.CQRSAdminMasterSyncMixin is admin_module.CQRSAdminMasterSyncMixin
    mixin = admin_module.CQRSAdminMasterSyncMixin
    assert mixin._cqrs_sync_queryset(None, 'qs') == 'qs'
    assert str(mixin.sync_items.short_description) == 'Synchronize selected %(verbose_name_plural)s via CQRS'
