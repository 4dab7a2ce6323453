"""Meta, correlation ids and message expiry of master events (UPSTREAM_SPEC §2.1, §3.1, §5.1, §10.1)."""

from __future__ import annotations

import datetime as dt
import uuid

from django.test import override_settings
from django.utils import timezone

from dj_cqrs.core import codec
from dj_cqrs.payload import get_message_expiration_dt
from dj_cqrs.testing import capture_events
from tests.master._helpers import cqrs_with, db_tx
from tests.testapp import models as m

pytestmark = db_tx

META_CALLS: list[dict] = []


def meta_fn(obj=None, **kwargs):
    """Referenced by dotted path in the settings."""
    META_CALLS.append({'obj': obj, **kwargs})
    return {'from': 'dotted', 'signal': kwargs['signal_type'], 'pk': obj.pk}


def _meta_callable(obj, **kwargs):
    return {'from': 'callable', 'keys': sorted(kwargs)}


# -- meta ------------------------------------------------------------------------------------------
def test_default_meta_is_empty_dict_on_every_event():
    with capture_events(publish=True) as events:
        obj = m.BasicMaster.objects.create(name='a')
        obj.cqrs_sync()
        obj.delete()
    assert [(e.signal_type, e.to_dict()['meta']) for e in events] == [
        ('SAVE', {}),
        ('SYNC', {}),
        ('DELETE', {}),
    ]
    assert codec.encode_fields(events[0].to_dict()).endswith(b',"meta":{}}')


def test_meta_function_callable_receives_kwargs_per_signal_type():
    with override_settings(CQRS=cqrs_with(meta_function=_meta_callable)), capture_events() as events:
        obj = m.BasicMaster.objects.create(name='a')
        obj.cqrs_sync()
        obj.delete()
    assert [e.meta for e in events] == [
        {'from': 'callable', 'keys': ['instance_data', 'previous_data', 'signal_type']},
        {'from': 'callable', 'keys': ['instance_data', 'previous_data', 'signal_type']},
        {'from': 'callable', 'keys': ['instance_data', 'signal_type']},
    ]


def test_meta_function_dotted_path_gets_the_instance_and_event_data():
    META_CALLS.clear()
    path = f'{__name__}.meta_fn'
    with override_settings(CQRS=cqrs_with(meta_function=path)), capture_events() as events:
        obj = m.TrackedMaster.objects.create(char_field='x')
    (event,) = events
    assert event.meta == {'from': 'dotted', 'signal': 'SAVE', 'pk': obj.pk}
    (call,) = META_CALLS
    assert call['obj'] is obj
    assert call['signal_type'] == 'SAVE'
    assert call['instance_data'] == event.instance_data
    assert call['previous_data'] == {'char_field': None, 'cqrs_revision': None}


def test_meta_reaches_replica_with_cqrs_meta():
    with override_settings(CQRS=cqrs_with(meta_function=_meta_callable)):
        obj = m.TrackedMaster.objects.create(char_field='x')
        obj.delete()
    logs = list(m.HookLog.objects.filter(cqrs_id='tracked').order_by('pk').values_list('action', 'meta'))
    assert logs == [
        ('create', {'from': 'callable', 'keys': ['instance_data', 'previous_data', 'signal_type']}),
        ('delete', {'from': 'callable', 'keys': ['instance_data', 'signal_type']}),
    ]


def test_get_cqrs_meta_override_guide_snippet(monkeypatch):
    """The getting-started guide: ``meta = super().get_cqrs_meta(**kwargs); meta['access']['owner'] = True``."""

    def get_cqrs_meta(self, **kwargs):
        meta = super(m.BasicMaster, self).get_cqrs_meta(**kwargs)
        meta['access']['owner'] = True
        meta['signal'] = kwargs['signal_type']
        return meta

    monkeypatch.setattr(m.BasicMaster, 'get_cqrs_meta', get_cqrs_meta)
    with capture_events() as events:
        obj = m.BasicMaster.objects.create(name='a')
        obj.delete()
    assert [e.to_dict()['meta'] for e in events] == [
        {'access': {'owner': True}, 'signal': 'SAVE'},
        {'access': {'owner': True}, 'signal': 'DELETE'},
    ]
    body = codec.encode_fields(events[0].to_dict())
    assert body.endswith(b'"meta":{"access":{"owner":true},"signal":"SAVE"}}')


def test_guide_snippet_on_top_of_a_meta_function(monkeypatch):
    def get_cqrs_meta(self, **kwargs):
        meta = super(m.BasicMaster, self).get_cqrs_meta(**kwargs)
        meta['access']['owner'] = True
        return meta

    monkeypatch.setattr(m.BasicMaster, 'get_cqrs_meta', get_cqrs_meta)
    with override_settings(CQRS=cqrs_with(meta_function=_meta_callable)), capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert events[0].meta == {
        'from': 'callable',
        'keys': ['instance_data', 'previous_data', 'signal_type'],
        'access': {'owner': True},
    }


def test_get_cqrs_meta_returning_non_dict_is_sent_as_is(monkeypatch):
    monkeypatch.setattr(m.BasicMaster, 'get_cqrs_meta', lambda self, **kw: ['a', 1])
    with capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert events[0].to_dict()['meta'] == ['a', 1]


# -- correlation ---------------------------------------------------------------------------------
def test_correlation_function_is_called_with_event_identity():
    calls = []

    def correlation(signal_type, cqrs_id, instance_pk, queue):
        calls.append((signal_type, cqrs_id, instance_pk, queue))
        return f'{signal_type}-{instance_pk}-{queue}'

    with override_settings(CQRS=cqrs_with(correlation_function=correlation)), capture_events() as events:
        obj = m.BasicMaster.objects.create(name='a')
        obj.cqrs_sync(queue='replica')
        pk = obj.pk
        obj.delete()
    assert [e.correlation_id for e in events] == [
        f'SAVE-{pk}-None',
        f'SYNC-{pk}-replica',
        f'DELETE-{pk}-None',
    ]
    assert calls == [
        ('SAVE', 'basic', pk, None),
        ('SYNC', 'basic', pk, 'replica'),
        ('DELETE', 'basic', pk, None),
    ]
    assert events[0].to_dict()['correlation_id'] == f'SAVE-{pk}-None'


def test_correlation_id_uuid_is_stringified_on_the_wire():
    value = uuid.UUID('12345678-1234-5678-1234-567812345678')
    with override_settings(CQRS=cqrs_with(correlation_function=lambda *a: value)), capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert events[0].correlation_id == value
    assert events[0].to_dict()['correlation_id'] == '12345678-1234-5678-1234-567812345678'


def test_no_correlation_function_gives_null():
    with capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert events[0].to_dict()['correlation_id'] is None


# -- expiry --------------------------------------------------------------------------------------
def test_default_ttl_is_one_day_seconds_precision():
    before = timezone.now().replace(microsecond=0)
    with capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    after = timezone.now()
    expires = events[0].expires
    assert before + dt.timedelta(days=1) <= expires <= after + dt.timedelta(days=1)
    text = events[0].to_dict()['expires']
    assert text == expires.replace(microsecond=0).isoformat()
    assert text.endswith('+00:00') and '.' not in text and 'T' in text


def test_custom_ttl():
    with override_settings(CQRS=cqrs_with(CQRS_MESSAGE_TTL=60)):
        now = timezone.now()
        with capture_events() as events:
            m.BasicMaster.objects.create(name='a')
    delta = events[0].expires - now
    assert dt.timedelta(seconds=59) <= delta <= dt.timedelta(seconds=61)


def test_ttl_none_means_never_expires():
    with override_settings(CQRS=cqrs_with(CQRS_MESSAGE_TTL=None)):
        assert get_message_expiration_dt() is None
        with capture_events(publish=True) as events:
            obj = m.BasicMaster.objects.create(name='a')
            obj.delete()
    assert [e.expires for e in events] == [None, None]
    assert [e.to_dict()['expires'] for e in events] == [None, None]
    assert b'"expires":null,' in codec.encode_fields(events[0].to_dict())
    assert events[0].is_expired() is False


def test_get_message_expiration_dt_explicit_ttl():
    now = timezone.now()
    value = get_message_expiration_dt(10)
    assert dt.timedelta(seconds=9) <= value - now <= dt.timedelta(seconds=11)


def test_retries_zero_on_publish():
    with capture_events() as events:
        m.BasicMaster.objects.create(name='a')
    assert events[0].retries == 0
    assert events[0].to_dict()['retries'] == 0
    assert list(events[0].to_dict()) == list(codec.BODY_KEYS)
