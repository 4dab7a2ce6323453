"""Upstream import paths and public names (UPSTREAM_SPEC §1), constants, ``current_transport``,
``TransportMock`` (§2.13), utilities (§2.15) and ``TransportPayload`` (§2.12)."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import inspect
import logging
import queue as queue_module
import threading
import uuid
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings
from django.dispatch import Signal
from django.test import override_settings
from django.utils import timezone

PUBLIC_NAMES = [
    ('dj_cqrs.apps', 'CQRSConfig'),
    ('dj_cqrs.mixins', 'RawMasterMixin'),
    ('dj_cqrs.mixins', 'MasterMixin'),
    ('dj_cqrs.mixins', 'RawReplicaMixin'),
    ('dj_cqrs.mixins', 'ReplicaMixin'),
    ('dj_cqrs.metas', 'MasterMeta'),
    ('dj_cqrs.metas', 'ReplicaMeta'),
    ('dj_cqrs.managers', 'MasterManager'),
    ('dj_cqrs.managers', 'ReplicaManager'),
    ('dj_cqrs.signals', 'post_bulk_create'),
    ('dj_cqrs.signals', 'post_update'),
    ('dj_cqrs.signals', 'MasterSignals'),
    ('dj_cqrs.registries', 'RegistryMixin'),
    ('dj_cqrs.registries', 'MasterRegistry'),
    ('dj_cqrs.registries', 'ReplicaRegistry'),
    ('dj_cqrs.constants', 'SignalType'),
    ('dj_cqrs.constants', 'ALL_BASIC_FIELDS'),
    ('dj_cqrs.constants', 'NO_QUEUE'),
    ('dj_cqrs.constants', 'FIELDS_TRACKER_FIELD_NAME'),
    ('dj_cqrs.constants', 'TRACKED_FIELDS_ATTR_NAME'),
    ('dj_cqrs.constants', 'DB_VENDOR_PG'),
    ('dj_cqrs.constants', 'DB_VENDOR_MYSQL'),
    ('dj_cqrs.constants', 'PG_TIMEOUT_FLAG'),
    ('dj_cqrs.constants', 'MYSQL_TIMEOUT_ERROR_CODE'),
    ('dj_cqrs.dataclasses', 'TransportPayload'),
    ('dj_cqrs.transport', 'BaseTransport'),
    ('dj_cqrs.transport', 'RabbitMQTransport'),
    ('dj_cqrs.transport', 'KombuTransport'),
    ('dj_cqrs.transport', 'current_transport'),
    ('dj_cqrs.transport.base', 'BaseTransport'),
    ('dj_cqrs.transport.rabbit_mq', 'RabbitMQTransport'),
    ('dj_cqrs.transport.kombu', 'KombuTransport'),
    ('dj_cqrs.transport.kombu', '_KombuConsumer'),
    ('dj_cqrs.transport.mock', 'TransportMock'),
    ('dj_cqrs.transport.mixins', 'LoggingMixin'),
    ('dj_cqrs.controller.producer', 'produce'),
    ('dj_cqrs.controller.consumer', 'consume'),
    ('dj_cqrs.controller.consumer', 'route_signal_to_replica_model'),
    ('dj_cqrs.delay', 'DelayMessage'),
    ('dj_cqrs.delay', 'DelayQueue'),
    ('dj_cqrs.correlation', 'get_correlation_id'),
    ('dj_cqrs.utils', 'get_message_expiration_dt'),
    ('dj_cqrs.utils', 'get_delay_queue_max_size'),
    ('dj_cqrs.utils', 'get_messages_prefetch_count_per_worker'),
    ('dj_cqrs.utils', 'get_json_valid_value'),
    ('dj_cqrs.utils', 'apply_query_timeouts'),
    ('dj_cqrs.utils', 'bulk_relate_cqrs_serialization'),
    ('dj_cqrs.logger', 'install_last_query_capturer'),
    ('dj_cqrs.logger', 'log_timed_out_queries'),
    ('dj_cqrs.state', 'cqrs_state'),
    ('dj_cqrs.tracker', 'CQRSTracker'),
    ('dj_cqrs.admin', 'CQRSAdminMasterSyncMixin'),
    # The upstream docs name this path (a doc bug, §1); offered as an alias.
    ('dj_cqrs.admin_mixins', 'CQRSAdminMasterSyncMixin'),
    ('dj_cqrs.management.utils', 'batch_qs'),
]
PUBLIC_NAMES = [pytest.param(module, name, id=f'{module}.{name}') for module, name in PUBLIC_NAMES]


@pytest.mark.parametrize(('module', 'name'), PUBLIC_NAMES)
def test_public_name_imports(module, name):
    imported = importlib.import_module(module)
    assert hasattr(imported, name)
    namespace: dict = {}
    exec(f'from {module} import {name}', namespace)  # the form users write
    assert namespace[name] is getattr(imported, name)


def test_facades_re_export_the_same_objects():
    from dj_cqrs import dataclasses, managers, metas, mixins, registries, transport
    from dj_cqrs.transport import base, kombu, rabbit_mq

    assert transport.BaseTransport is base.BaseTransport
    assert transport.RabbitMQTransport is rabbit_mq.RabbitMQTransport
    assert transport.KombuTransport is kombu.KombuTransport
    assert isinstance(metas.MasterMeta, type) and isinstance(metas.ReplicaMeta, type)
    assert type(mixins.MasterMixin) is metas.MasterMeta
    assert type(mixins.ReplicaMixin) is metas.ReplicaMeta
    assert mixins.RawMasterMixin._meta.abstract and mixins.MasterMixin._meta.abstract
    assert mixins.ReplicaMixin._meta.abstract
    from django.db.models import Manager

    from tests.testapp.models import BasicMaster, BasicReplica

    assert type(BasicMaster.cqrs) is managers.MasterManager
    assert type(BasicReplica.cqrs) is managers.ReplicaManager
    assert type(BasicMaster.objects) is Manager
    assert type(BasicReplica.objects) is Manager
    assert issubclass(registries.MasterRegistry, registries.RegistryMixin)
    assert issubclass(registries.ReplicaRegistry, registries.RegistryMixin)
    assert dataclasses.TransportPayload.__name__ == 'TransportPayload'


MANAGEMENT_COMMANDS = [
    'cqrs_consume',
    'cqrs_dead_letters',
    'cqrs_sync',
    'cqrs_bulk_dump',
    'cqrs_bulk_load',
    'cqrs_diff_master',
    'cqrs_diff_replica',
    'cqrs_diff_sync',
    'cqrs_deleted_diff_master',
    'cqrs_deleted_diff_replica',
    'cqrs_deleted_sync_replica',
    'cqrs_reconcile',
]


@pytest.mark.parametrize('name', MANAGEMENT_COMMANDS)
def test_management_command_exists(name):
    from django.core.management import get_commands, load_command_class

    assert get_commands().get(name) == 'dj_cqrs'
    load_command_class('dj_cqrs', name)


def test_app_config():
    from django.apps import apps

    from dj_cqrs.apps import CQRSConfig

    assert CQRSConfig.name == 'dj_cqrs'
    assert isinstance(apps.get_app_config('dj_cqrs'), CQRSConfig)


# -- constants (§1, §2.11) ---------------------------------------------------------------------------
def test_constant_values():
    from dj_cqrs import constants

    assert constants.ALL_BASIC_FIELDS == '__all__'
    assert constants.NO_QUEUE == 'None'
    assert constants.FIELDS_TRACKER_FIELD_NAME == '__fields_tracker'
    assert constants.TRACKED_FIELDS_ATTR_NAME == '__tracked_fields'
    assert constants.DB_VENDOR_PG == 'postgresql'
    assert constants.DB_VENDOR_MYSQL == 'mysql'
    assert constants.PG_TIMEOUT_FLAG == 'statement timeout'
    assert constants.MYSQL_TIMEOUT_ERROR_CODE == 3024


def test_signal_type_values():
    from dj_cqrs.constants import SignalType

    assert (SignalType.SAVE, SignalType.DELETE, SignalType.SYNC) == ('SAVE', 'DELETE', 'SYNC')


def test_default_values_of_section_3():
    from dj_cqrs import constants

    values = {v for k, v in vars(constants).items() if k.startswith('DEFAULT_')}
    assert {86400, 30, 2, 1000, 864000, False} <= values


def test_signals_and_master_signals():
    from dj_cqrs import signals

    assert isinstance(signals.post_bulk_create, Signal)
    assert isinstance(signals.post_update, Signal)
    assert signals.post_bulk_create is not signals.post_update
    for name in ('register_model', 'post_save', 'post_delete', 'post_bulk_create', 'post_bulk_update'):
        assert inspect.ismethod(getattr(signals.MasterSignals, name)), name


def test_registries_are_separate_and_log_misses(caplog):
    from dj_cqrs.registries import MasterRegistry, ReplicaRegistry

    assert MasterRegistry.models is not ReplicaRegistry.models
    assert MasterRegistry.get_model_by_cqrs_id('basic').__name__ == 'BasicMaster'
    assert ReplicaRegistry.get_model_by_cqrs_id('basic').__name__ == 'BasicReplica'
    with caplog.at_level(logging.ERROR, logger='django-cqrs'):
        assert MasterRegistry.get_model_by_cqrs_id('no_such_id') is None
    assert 'No model with such CQRS_ID: no_such_id.' in [r.getMessage() for r in caplog.records]


def test_cqrs_state_is_thread_local():
    from dj_cqrs.state import cqrs_state

    assert isinstance(cqrs_state, threading.local)
    assert cqrs_state.bulk_relate_cm is None
    seen = []
    cqrs_state.bulk_relate_cm = 'here'
    try:
        thread = threading.Thread(target=lambda: seen.append(cqrs_state.bulk_relate_cm))
        thread.start()
        thread.join()
    finally:
        cqrs_state.bulk_relate_cm = None
    assert seen == [None]


def test_bulk_relate_cqrs_serialization_context_and_decorator():
    from dj_cqrs.state import cqrs_state
    from dj_cqrs.utils import bulk_relate_cqrs_serialization

    with bulk_relate_cqrs_serialization() as cm:
        assert cqrs_state.bulk_relate_cm is cm
    assert cqrs_state.bulk_relate_cm is None

    with pytest.raises(ZeroDivisionError), bulk_relate_cqrs_serialization(cqrs_id='author'):
        assert cqrs_state.bulk_relate_cm is not None
        1 / 0  # noqa: B018
    assert cqrs_state.bulk_relate_cm is None

    @bulk_relate_cqrs_serialization()
    def decorated():
        return cqrs_state.bulk_relate_cm

    assert decorated() is not None
    assert cqrs_state.bulk_relate_cm is None


@pytest.mark.parametrize(
    ('value', 'expected'),
    [
        (dt.date(2024, 5, 1), '2024-05-01'),
        (dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc), '2024-05-01 10:00:00+00:00'),
        (dt.datetime(2024, 5, 1, 10, 0, 0, 123456), '2024-05-01 10:00:00.123456'),
        (uuid.UUID('12345678-1234-5678-1234-567812345678'), '12345678-1234-5678-1234-567812345678'),
        (1, 1),
        ('s', 's'),
        (None, None),
        (Decimal('1.5'), Decimal('1.5')),
        ({'a': 1}, {'a': 1}),
    ],
)
def test_get_json_valid_value(value, expected):
    from dj_cqrs.utils import get_json_valid_value

    assert get_json_valid_value(value) == expected
    assert type(get_json_valid_value(value)) is type(expected)


# -- current_transport -----------------------------------------------------------------------------------
def test_current_transport_is_the_configured_class():
    from dj_cqrs import transport
    from dj_cqrs.testing import LoopbackTransport

    assert settings.CQRS['transport'] == 'dj_cqrs.testing.LoopbackTransport'
    assert transport.current_transport is LoopbackTransport


def test_current_transport_follows_override_settings():
    from dj_cqrs import transport
    from dj_cqrs.testing import LoopbackTransport
    from dj_cqrs.transport.mock import TransportMock
    from dj_cqrs.transport.rabbit_mq import RabbitMQTransport

    with override_settings(CQRS={**settings.CQRS, 'transport': 'dj_cqrs.transport.mock.TransportMock'}):
        assert transport.current_transport is TransportMock
        with override_settings(CQRS={**settings.CQRS, 'transport': 'dj_cqrs.transport.RabbitMQTransport'}):
            assert transport.current_transport is RabbitMQTransport
        assert transport.current_transport is TransportMock
    assert transport.current_transport is LoopbackTransport


def test_current_transport_follows_in_place_edits():
    from dj_cqrs import transport
    from dj_cqrs.transport.mock import TransportMock

    with override_settings(CQRS=copy.deepcopy(settings.CQRS)):
        settings.CQRS['transport'] = 'dj_cqrs.transport.mock.TransportMock'
        assert transport.current_transport is TransportMock


@pytest.mark.parametrize(
    'cqrs',
    [
        {'queue': 'replica'},
        {'transport': None, 'queue': 'replica'},
        {'transport': 'dj_cqrs.transport.nope.Transport', 'queue': 'replica'},
        {'transport': 'dj_cqrs.transport.base.Nope', 'queue': 'replica'},
        'not-a-dict',
    ],
)
def test_current_transport_is_none_when_missing_or_not_importable(cqrs):
    from dj_cqrs import transport

    with override_settings(CQRS=cqrs):
        assert transport.current_transport is None


def test_current_transport_is_none_without_cqrs_setting():
    from dj_cqrs import transport

    with override_settings():
        del settings.CQRS
        assert transport.current_transport is None


def test_producer_calls_current_transport_produce():
    from dj_cqrs.controller import producer
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload('SAVE', 'basic', {'id': 1}, 1)
    with override_settings(CQRS={**settings.CQRS, 'transport': 'dj_cqrs.transport.mock.TransportMock'}):
        assert producer.produce(payload) is payload
        with mock.patch('dj_cqrs.transport.mock.TransportMock.produce', return_value='sent') as produce:
            assert producer.produce(payload) == 'sent'
        produce.assert_called_once_with(payload)


def test_consumer_consume_deep_copies_and_routes():
    from dj_cqrs.controller import consumer
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload(
        'SYNC',
        'basic',
        {'id': 1, 'nested': {'a': 1}},
        1,
        queue='replica',
        previous_data={'x': 1},
        meta={'m': 1},
    )

    def handler(signal_type, cqrs_id, instance_data, previous_data=None, meta=None, queue=None, **kwargs):
        instance_data['nested']['a'] = 2
        return (signal_type, cqrs_id, previous_data, meta, queue)

    with mock.patch.object(consumer, 'route_signal_to_replica_model', side_effect=handler) as route:
        assert consumer.consume(payload) == ('SYNC', 'basic', {'x': 1}, {'m': 1}, 'replica')
    route.assert_called_once()
    assert payload.instance_data == {'id': 1, 'nested': {'a': 1}}


# -- transports (§2.13) ----------------------------------------------------------------------------------
def test_base_transport_contract():
    from dj_cqrs.transport import BaseTransport

    assert BaseTransport.consumers == {}
    with pytest.raises(NotImplementedError):
        BaseTransport.produce(None)
    with pytest.raises(NotImplementedError):
        BaseTransport.consume()
    with pytest.raises(NotImplementedError):
        BaseTransport.clean_connection()


def test_upstream_transports_classes():
    from dj_cqrs.transport import BaseTransport, KombuTransport, RabbitMQTransport
    from dj_cqrs.transport.mixins import LoggingMixin

    for cls in (RabbitMQTransport, KombuTransport):
        assert issubclass(cls, BaseTransport)
        assert issubclass(cls, LoggingMixin)
        for name in ('produce', 'consume', 'clean_connection'):
            assert callable(getattr(cls, name))
    assert RabbitMQTransport.CONSUMER_RETRY_TIMEOUT == 5
    assert RabbitMQTransport.PRODUCER_RETRIES == 1
    assert KombuTransport.clean_connection() is None


def test_transport_mock_echoes_and_applies_nothing():
    from dj_cqrs.dataclasses import TransportPayload
    from dj_cqrs.transport import BaseTransport
    from dj_cqrs.transport.mock import TransportMock

    assert issubclass(TransportMock, BaseTransport)
    payload = TransportPayload('SAVE', 'basic', {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': 'x'}, 1)
    with (
        mock.patch('dj_cqrs.controller.consumer.consume') as consume,
        mock.patch('dj_cqrs.controller.consumer.route_signal_to_replica_model') as route,
        mock.patch('dj_cqrs.replica.dispatch.route_signal_to_replica_model') as dispatch,
    ):
        assert TransportMock.produce(payload) is payload
        assert TransportMock.consume(payload) is payload
        assert TransportMock.consume(payload=payload, extra=1) is payload
        assert TransportMock.consume() is None
    consume.assert_not_called()
    route.assert_not_called()
    dispatch.assert_not_called()
    with pytest.raises(NotImplementedError):
        TransportMock.clean_connection()


# -- utils (§2.15) ---------------------------------------------------------------------------------------
NOW = dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=dt.timezone.utc)


@pytest.fixture
def frozen_now():
    with mock.patch('django.utils.timezone.now', return_value=NOW):
        yield NOW


def test_get_message_expiration_dt(frozen_now):
    from dj_cqrs.utils import get_message_expiration_dt

    assert get_message_expiration_dt() == NOW + dt.timedelta(seconds=86400)
    assert get_message_expiration_dt(10) == NOW + dt.timedelta(seconds=10)
    # ``message_ttl or setting``: 0 falls back to the setting.
    assert get_message_expiration_dt(0) == NOW + dt.timedelta(seconds=86400)
    with override_settings(CQRS={**settings.CQRS, 'master': {'CQRS_MESSAGE_TTL': 60}}):
        assert get_message_expiration_dt() == NOW + dt.timedelta(seconds=60)
    with override_settings(CQRS={**settings.CQRS, 'master': {'CQRS_MESSAGE_TTL': None}}):
        assert get_message_expiration_dt() is None
        assert get_message_expiration_dt(5) == NOW + dt.timedelta(seconds=5)


@pytest.mark.parametrize(
    ('replica', 'max_size', 'prefetch'),
    [
        ('absent', None, 0),
        ({}, 1000, 1001),
        ({'delay_queue_max_size': 5}, 5, 6),
        ({'delay_queue_max_size': None}, None, 0),
        ({'delay_queue_max_size': 0}, 1000, 1001),
        # The documented spelling works too (a deliberate difference, docs/compatibility.md).
        ({'CQRS_DELAY_QUEUE_MAX_SIZE': 7}, 7, 8),
    ],
)
def test_delay_queue_size_and_prefetch(replica, max_size, prefetch):
    from dj_cqrs.utils import get_delay_queue_max_size, get_messages_prefetch_count_per_worker

    cqrs = {k: v for k, v in settings.CQRS.items() if k != 'replica'}
    if replica != 'absent':
        cqrs['replica'] = replica
    with override_settings(CQRS=cqrs):
        assert get_delay_queue_max_size() == max_size
        assert get_messages_prefetch_count_per_worker() == prefetch


def test_get_correlation_id():
    from dj_cqrs.correlation import get_correlation_id

    assert get_correlation_id('SAVE', 'basic', 1, None) is None
    calls = []

    def function(*args):
        calls.append(args)
        return 'cid'

    with override_settings(CQRS={**settings.CQRS, 'master': {'correlation_function': function}}):
        assert get_correlation_id('SYNC', 'basic', 1, 'q') == 'cid'
    assert calls == [('SYNC', 'basic', 1, 'q')]


def test_logger_functions_are_callable():
    from dj_cqrs.logger import install_last_query_capturer, log_timed_out_queries

    assert callable(install_last_query_capturer)
    assert callable(log_timed_out_queries)


# -- DelayQueue (§2.15) -----------------------------------------------------------------------------------
def delay_message(tag, seconds):
    from dj_cqrs.delay import DelayMessage

    return DelayMessage(tag, f'payload-{tag}', timezone.now() + dt.timedelta(seconds=seconds))


def test_delay_message_holder():
    from dj_cqrs.delay import DelayMessage

    eta = timezone.now()
    message = DelayMessage(3, 'p', eta)
    assert (message.delivery_tag, message.payload, message.eta) == (3, 'p', eta)


@pytest.mark.parametrize('max_size', [0, -1])
def test_delay_queue_rejects_non_positive_max_size(max_size):
    from dj_cqrs.delay import DelayQueue

    # Upstream asserts; ours raises ValueError (docs/compatibility.md), same message.
    with pytest.raises(ValueError, match=r'^Delay queue max_size should be positive integer\.$'):
        DelayQueue(max_size=max_size)


def test_delay_queue_accepts_only_delay_messages():
    from dj_cqrs.delay import DelayQueue

    queue = DelayQueue()
    with pytest.raises(TypeError):
        queue.put('not a DelayMessage')
    assert queue.qsize() == 0


def test_delay_queue_orders_by_eta_then_tag():
    from dj_cqrs.delay import DelayQueue

    queue = DelayQueue()
    same_eta = timezone.now() + dt.timedelta(seconds=5)
    for message in (delay_message(1, 30), delay_message(2, 10), delay_message(3, 20)):
        queue.put(message)
    from dj_cqrs.delay import DelayMessage

    queue.put(DelayMessage(9, 'b', same_eta))
    queue.put(DelayMessage(8, 'a', same_eta))
    assert queue.qsize() == 5
    assert [queue.get().delivery_tag for _ in range(5)] == [8, 9, 2, 3, 1]
    assert queue.qsize() == 0


def test_delay_queue_full():
    from dj_cqrs.delay import DelayQueue

    queue = DelayQueue(max_size=2)
    queue.put(delay_message(1, 1))
    assert not queue.full()
    queue.put(delay_message(2, 1))
    assert queue.full()
    with pytest.raises(queue_module.Full, match=r'^Delay queue is full$'):
        queue.put(delay_message(3, 1))
    assert queue.qsize() == 2


def test_unbounded_delay_queue_is_never_full():
    from dj_cqrs.delay import DelayQueue

    queue = DelayQueue()
    for tag in range(50):
        queue.put(delay_message(tag, tag))
    assert not queue.full()
    assert queue.qsize() == 50


def test_delay_queue_get_ready_yields_due_messages_in_eta_order():
    from dj_cqrs.delay import DelayQueue

    queue = DelayQueue()
    for message in (delay_message(1, -1), delay_message(2, 60), delay_message(3, -10), delay_message(4, 0)):
        queue.put(message)
    ready = [m.delivery_tag for m in queue.get_ready()]
    assert ready == [3, 1, 4]
    assert queue.qsize() == 1
    assert list(queue.get_ready()) == []
    assert queue.get().delivery_tag == 2


# -- batch_qs (§2.15) -------------------------------------------------------------------------------------
@pytest.fixture
def hook_logs(db):
    from tests.testapp.models import HookLog

    HookLog.objects.bulk_create(HookLog(cqrs_id=f'c{i}', action='a') for i in range(5))
    return HookLog


def test_batch_qs_default_batch_size():
    from dj_cqrs.management.utils import batch_qs

    assert inspect.signature(batch_qs).parameters['batch_size'].default == 10000


def test_batch_qs_yields_every_row_once(hook_logs):
    from dj_cqrs.management.utils import batch_qs

    batches = [list(batch) for batch in batch_qs(hook_logs.objects.all(), batch_size=2)]
    assert [len(b) for b in batches] == [2, 2, 1]
    pks = [obj.pk for batch in batches for obj in batch]
    assert sorted(pks) == sorted(hook_logs.objects.values_list('pk', flat=True))
    assert len(set(pks)) == 5
    assert [len(list(b)) for b in batch_qs(hook_logs.objects.all(), batch_size=5)] == [5]
    assert [len(list(b)) for b in batch_qs(hook_logs.objects.all())] == [5]
    assert list(batch_qs(hook_logs.objects.none())) == []


def test_batch_qs_respects_filters_and_any_ordering(hook_logs):
    from dj_cqrs.management.utils import batch_qs

    qs = hook_logs.objects.exclude(cqrs_id='c0').order_by('-cqrs_id')
    rows = [obj.cqrs_id for batch in batch_qs(qs, batch_size=3) for obj in batch]
    assert sorted(rows) == ['c1', 'c2', 'c3', 'c4']


@pytest.mark.parametrize('batch_size', [0, -1])
def test_batch_qs_rejects_non_positive_batch_size(hook_logs, batch_size):
    from dj_cqrs.management.utils import batch_qs

    # Upstream asserts batch_size > 0; ours raises ValueError (docs/compatibility.md).
    with pytest.raises(ValueError):
        list(batch_qs(hook_logs.objects.all(), batch_size=batch_size))


def test_batch_qs_yields_querysets(hook_logs):
    from django.db.models import QuerySet

    from dj_cqrs.management.utils import batch_qs

    for batch in batch_qs(hook_logs.objects.all(), batch_size=2):
        assert isinstance(batch, QuerySet)


def test_batch_qs_on_a_values_queryset(hook_logs):
    from dj_cqrs.management.utils import batch_qs

    rows = [
        row for batch in batch_qs(hook_logs.objects.values('id', 'cqrs_id'), batch_size=2) for row in batch
    ]
    assert len(rows) == 5


# -- TransportPayload (§2.12) -------------------------------------------------------------------------------
def make_payload(**kwargs):
    from dj_cqrs.dataclasses import TransportPayload

    args = {'signal_type': 'SAVE', 'cqrs_id': 'basic', 'instance_data': {'id': 1}, 'instance_pk': 1, **kwargs}
    return TransportPayload(**args)


def test_payload_constructor_positional_order_and_defaults():
    from dj_cqrs.dataclasses import TransportPayload

    expires = NOW
    payload = TransportPayload('SYNC', 'basic', {'id': 1}, 1, 'q', {'p': 1}, 'cid', expires, 3, {'m': 1})
    assert payload.signal_type == 'SYNC'
    assert payload.cqrs_id == 'basic'
    assert payload.instance_data == {'id': 1}
    assert payload.pk == 1
    assert payload.queue == 'q'
    assert payload.previous_data == {'p': 1}
    assert payload.correlation_id == 'cid'
    assert payload.expires is expires
    assert payload.retries == 3
    assert payload.meta == {'m': 1}

    defaults = TransportPayload('SAVE', 'basic', {}, None)
    assert (defaults.queue, defaults.previous_data, defaults.correlation_id) == (None, None, None)
    assert (defaults.expires, defaults.retries, defaults.meta) == (None, 0, None)
    parameters = list(inspect.signature(TransportPayload).parameters)
    assert parameters == [
        'signal_type',
        'cqrs_id',
        'instance_data',
        'instance_pk',
        'queue',
        'previous_data',
        'correlation_id',
        'expires',
        'retries',
        'meta',
    ]


@pytest.mark.parametrize(
    'name',
    [
        'signal_type',
        'cqrs_id',
        'instance_data',
        'pk',
        'queue',
        'previous_data',
        'correlation_id',
        'meta',
        'expires',
    ],
)
def test_payload_properties_are_read_only(name):
    payload = make_payload()
    with pytest.raises(AttributeError):
        setattr(payload, name, 'x')


def test_payload_retries_is_writable_and_validated():
    payload = make_payload()
    payload.retries = 5
    assert payload.retries == 5
    payload.retries = 0
    assert payload.retries == 0
    # Upstream asserts; ours raises ValueError with the same message (docs/compatibility.md).
    with pytest.raises(ValueError, match=r'^Payload retries field should be 0 or positive integer\.$'):
        payload.retries = -1
    assert payload.retries == 0
    with pytest.raises(ValueError, match=r'^Payload retries field should be 0 or positive integer\.$'):
        make_payload(retries=-1)


def test_payload_correlation_id_computed_at_construction():
    calls = []

    def function(signal_type, cqrs_id, instance_pk, queue):
        calls.append((signal_type, cqrs_id, instance_pk, queue))
        return f'{signal_type}-{cqrs_id}-{instance_pk}-{queue}'

    with override_settings(CQRS={**settings.CQRS, 'master': {'correlation_function': function}}):
        payload = make_payload(signal_type='SYNC', queue='q')
        given = make_payload(correlation_id='given')
        empty = make_payload(correlation_id='')
    assert payload.correlation_id == 'SYNC-basic-1-q'
    assert given.correlation_id == 'given'
    assert empty.correlation_id == 'SAVE-basic-1-None'
    assert calls == [('SYNC', 'basic', 1, 'q'), ('SAVE', 'basic', 1, None)]
    # Computed once, not re-read after the setting changes.
    assert payload.correlation_id == 'SYNC-basic-1-q'


def test_payload_to_dict_keys_order_and_values():
    pk = uuid.UUID('12345678-1234-5678-1234-567812345678')
    payload = make_payload(
        instance_pk=pk,
        queue='q',
        previous_data={'name': 'old'},
        correlation_id=uuid.UUID(int=1),
        expires=dt.datetime(2024, 5, 2, 10, 0, 0, 987654, tzinfo=dt.timezone.utc),
        retries=2,
        meta={'m': 1},
    )
    data = payload.to_dict()
    assert list(data) == [
        'signal_type',
        'cqrs_id',
        'instance_data',
        'previous_data',
        'instance_pk',
        'correlation_id',
        'retries',
        'expires',
        'meta',
    ]
    assert 'queue' not in data
    assert data == {
        'signal_type': 'SAVE',
        'cqrs_id': 'basic',
        'instance_data': {'id': 1},
        'previous_data': {'name': 'old'},
        'instance_pk': '12345678-1234-5678-1234-567812345678',
        'correlation_id': '00000000-0000-0000-0000-000000000001',
        'retries': 2,
        'expires': '2024-05-02T10:00:00+00:00',
        'meta': {'m': 1},
    }


@pytest.mark.parametrize(
    ('expires', 'expected'),
    [
        (None, None),
        (dt.datetime(2024, 5, 2, 10, 0, 0, tzinfo=dt.timezone.utc), '2024-05-02T10:00:00+00:00'),
        (
            dt.datetime(2024, 5, 2, 10, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            '2024-05-02T10:00:00+03:00',
        ),
        (dt.datetime(2024, 5, 2, 10, 0, 0, 999999), '2024-05-02T10:00:00'),
    ],
)
def test_payload_to_dict_expires_format(expires, expected):
    assert make_payload(expires=expires).to_dict()['expires'] == expected


@pytest.mark.parametrize(
    ('pk', 'expected'),
    [
        (dt.date(2024, 5, 1), '2024-05-01'),
        (dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc), '2024-05-01 10:00:00+00:00'),
        (7, 7),
        ('abc', 'abc'),
        (None, None),
    ],
)
def test_payload_to_dict_instance_pk(pk, expected):
    assert make_payload(instance_pk=pk).to_dict()['instance_pk'] == expected


def full_message(**changes):
    message = {
        'signal_type': 'SAVE',
        'cqrs_id': 'basic',
        'instance_data': {'id': 1, 'cqrs_revision': 0, 'cqrs_updated': '2024-05-01 10:00:00+00:00'},
        'previous_data': {'name': 'old'},
        'instance_pk': 1,
        'correlation_id': 'cid',
        'retries': 3,
        'expires': '2024-05-02T10:00:00+00:00',
        'meta': {'m': 1},
    }
    message.update(changes)
    return message


def test_payload_from_message_reads_every_key():
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload.from_message(full_message(queue='ignored'))
    assert payload.signal_type == 'SAVE'
    assert payload.cqrs_id == 'basic'
    assert payload.instance_data['id'] == 1
    assert payload.previous_data == {'name': 'old'}
    assert payload.pk == 1
    assert payload.correlation_id == 'cid'
    assert payload.retries == 3
    assert payload.expires == dt.datetime(2024, 5, 2, 10, 0, tzinfo=dt.timezone.utc)
    assert payload.meta == {'m': 1}
    # ``queue`` is not read (§2.12).
    assert payload.queue is None
    assert payload.to_dict() == full_message()


@pytest.mark.parametrize('key', ['signal_type', 'cqrs_id', 'instance_data'])
def test_payload_from_message_requires_keys(key):
    from dj_cqrs.dataclasses import TransportPayload

    message = full_message()
    del message[key]
    with pytest.raises(KeyError):
        TransportPayload.from_message(message)


def test_payload_from_message_optional_keys():
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload.from_message(
        {
            'signal_type': 'DELETE',
            'cqrs_id': 'basic',
            'instance_data': {'id': 1},
            'expires': None,
            'retries': None,
        }
    )
    assert payload.pk is None
    assert payload.previous_data is None
    assert payload.correlation_id is None
    assert payload.meta is None
    assert payload.retries == 0
    assert payload.expires is None


def test_payload_from_message_missing_expires_is_now_plus_ttl(frozen_now):
    from dj_cqrs.dataclasses import TransportPayload

    message = full_message()
    del message['expires']
    assert TransportPayload.from_message(message).expires == NOW + dt.timedelta(seconds=86400)
    with override_settings(CQRS={**settings.CQRS, 'master': {'CQRS_MESSAGE_TTL': 30}}):
        assert TransportPayload.from_message(message).expires == NOW + dt.timedelta(seconds=30)
    with override_settings(CQRS={**settings.CQRS, 'master': {'CQRS_MESSAGE_TTL': None}}):
        assert TransportPayload.from_message(message).expires is None
    # A replica-only service without a master section uses the default TTL (upstream: KeyError, §11 #29).
    replica_only = {k: v for k, v in settings.CQRS.items() if k != 'master'}
    with override_settings(CQRS=replica_only):
        assert TransportPayload.from_message(message).expires == NOW + dt.timedelta(seconds=86400)


def test_payload_from_message_null_expires_never_expires():
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload.from_message(full_message(expires=None))
    assert payload.expires is None
    assert not payload.is_expired()


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('2024-05-02T10:00:00+00:00', dt.datetime(2024, 5, 2, 10, tzinfo=dt.timezone.utc)),
        ('2024-05-02T10:00:00Z', dt.datetime(2024, 5, 2, 10, tzinfo=dt.timezone.utc)),
        ('2024-05-02T13:00:00+03:00', dt.datetime(2024, 5, 2, 10, tzinfo=dt.timezone.utc)),
        (
            '2024-05-02 10:00:00.123456+00:00',
            dt.datetime(2024, 5, 2, 10, 0, 0, 123456, tzinfo=dt.timezone.utc),
        ),
        # A naive expires (master with USE_TZ=False) is read in the current time zone (UTC here).
        ('2024-05-02T10:00:00', dt.datetime(2024, 5, 2, 10, tzinfo=dt.timezone.utc)),
    ],
)
def test_payload_from_message_parses_expires(text, expected):
    from dj_cqrs.dataclasses import TransportPayload

    expires = TransportPayload.from_message(full_message(expires=text)).expires
    assert expires == expected
    assert timezone.is_aware(expires)


def test_payload_is_expired(frozen_now):
    assert make_payload(expires=NOW - dt.timedelta(seconds=1)).is_expired()
    assert make_payload(expires=NOW).is_expired()  # ``expires <= now``
    assert not make_payload(expires=NOW + dt.timedelta(seconds=1)).is_expired()
    assert not make_payload(expires=None).is_expired()


def test_payload_from_message_roundtrip_of_to_dict(frozen_now):
    from dj_cqrs.dataclasses import TransportPayload

    original = make_payload(
        signal_type='SYNC',
        instance_data={'id': 5, 'cqrs_revision': 2, 'cqrs_updated': 'x'},
        instance_pk=5,
        previous_data={'a': 1},
        correlation_id='c',
        expires=NOW,
        retries=1,
        meta={},
    )
    again = TransportPayload.from_message(original.to_dict())
    assert again.to_dict() == original.to_dict()
