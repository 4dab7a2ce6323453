"""Masters on a non-default database alias (UPSTREAM_SPEC §11 #5: on_commit must follow ``using``).

``OtherDbMaster`` and ``OtherDbReplica`` live on ``replica_db`` (tests/routers.py).
"""

from __future__ import annotations

import pytest
from django.db import transaction

from dj_cqrs.testing import capture_events
from tests.master._helpers import db_revision, db_tx_multi
from tests.testapp import models as m

pytestmark = db_tx_multi


class Boom(Exception):
    pass


def test_rows_live_on_replica_db():
    obj = m.OtherDbMaster.objects.create(name='a')
    assert obj._state.db == 'replica_db'
    assert m.OtherDbReplica.objects.using('replica_db').get(pk=obj.pk).name == 'a'


def test_autocommit_save_publishes_while_default_transaction_is_open():
    with capture_events(publish=True) as events, transaction.atomic(using='default'):
        obj = m.OtherDbMaster.objects.create(name='a')
        # replica_db is in autocommit: the save committed, so the event is out already.
        assert [(e.signal_type, e.cqrs_id, e.pk) for e in events] == [('SAVE', 'other_db', obj.pk)]
    assert m.OtherDbReplica.objects.get(pk=obj.pk).name == 'a'


def test_event_waits_for_commit_of_its_own_alias_not_default():
    with capture_events() as events, transaction.atomic(using='default'):
        with transaction.atomic(using='replica_db'):
            obj = m.OtherDbMaster.objects.create(name='a')
            assert events == []
        # replica_db committed, default is still open: the event must be out now.
        assert [(e.signal_type, e.pk) for e in events] == [('SAVE', obj.pk)]


def test_default_rollback_does_not_drop_committed_other_db_event():
    with capture_events(publish=True) as events, pytest.raises(Boom), transaction.atomic(using='default'):
        with transaction.atomic(using='replica_db'):
            obj = m.OtherDbMaster.objects.create(name='kept')
        raise Boom
    assert [(e.signal_type, e.pk) for e in events] == [('SAVE', obj.pk)]
    assert m.OtherDbMaster.objects.filter(pk=obj.pk).exists()
    assert m.OtherDbReplica.objects.get(pk=obj.pk).name == 'kept'


def test_other_db_rollback_emits_nothing_even_if_default_commits():
    with capture_events() as events, transaction.atomic(using='default'):
        m.BasicMaster.objects.create(name='default row')
        with pytest.raises(Boom), transaction.atomic(using='replica_db'):
            m.OtherDbMaster.objects.create(name='lost')
            raise Boom
    assert [e.cqrs_id for e in events] == ['basic']
    assert not m.OtherDbMaster.objects.exists()


def test_update_on_other_db_bumps_once_and_publishes_at_its_commit():
    obj = m.OtherDbMaster.objects.create(name='a')
    with capture_events() as events, transaction.atomic(using='replica_db'):
        obj.name = 'b'
        obj.save()
        obj.save()
        assert events == []
    assert db_revision(m.OtherDbMaster, obj.pk, using='replica_db') == 1
    assert [(e.instance_data['name'], e.instance_data['cqrs_revision']) for e in events] == [('b', 1)]


def test_delete_on_other_db_publishes_at_its_commit():
    obj = m.OtherDbMaster.objects.create(name='a')
    pk = obj.pk
    with capture_events(publish=True) as events, transaction.atomic(using='default'):
        with transaction.atomic(using='replica_db'):
            obj.delete()
            assert events == []
        assert [(e.signal_type, e.pk) for e in events] == [('DELETE', pk)]
    assert not m.OtherDbReplica.objects.filter(pk=pk).exists()


def test_bulk_operations_on_other_db():
    with capture_events(publish=True) as events:
        created = m.OtherDbMaster.cqrs.bulk_create([m.OtherDbMaster(name='x'), m.OtherDbMaster(name='y')])
        count = m.OtherDbMaster.cqrs.bulk_update(m.OtherDbMaster.objects.all(), name='z')
    assert count == 2
    pks = sorted(o.pk for o in created)
    assert sorted((e.pk, e.instance_data['cqrs_revision']) for e in events) == sorted(
        [(pks[0], 0), (pks[1], 0), (pks[0], 1), (pks[1], 1)]
    )
    assert sorted(m.OtherDbReplica.objects.values_list('name', 'cqrs_revision')) == [('z', 1), ('z', 1)]


def test_sync_on_other_db():
    obj = m.OtherDbMaster.objects.create(name='a')
    m.OtherDbMaster.objects.filter(pk=obj.pk).update(name='fixed')
    with capture_events(publish=True) as events:
        assert obj.cqrs_sync() is True
    assert [(e.signal_type, e.instance_data['name']) for e in events] == [('SYNC', 'fixed')]
    assert m.OtherDbReplica.objects.get(pk=obj.pk).name == 'fixed'
