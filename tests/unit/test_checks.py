"""System checks of ``dj_cqrs.checks``: every settings id (E001–E016, E020, W001–W011) and every model
id (E101–E113), with the exact upstream messages of UPSTREAM_SPEC §2.3, §2.7 and §3.2."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.checks import WARNING, Error, Tags, Warning, run_checks
from django.db import connections, models
from django.test import override_settings
from django.test.utils import isolate_apps

from dj_cqrs import checks
from dj_cqrs.conf import cqrs_settings
from dj_cqrs.metas import MasterMeta, ReplicaMeta
from dj_cqrs.mixins import MasterMixin, RawMasterMixin, RawReplicaMixin, ReplicaMixin
from dj_cqrs.registry import MasterRegistry, ReplicaRegistry

MOCK = 'dj_cqrs.transport.mock.TransportMock'
RABBIT = 'dj_cqrs.transport.RabbitMQTransport'
BASE = {'transport': MOCK, 'queue': 'replica', 'master': {}, 'replica': {}}


# -- helpers ------------------------------------------------------------------------------------
def meta_ok(obj, **kwargs):
    return {'pk': obj.pk}


def meta_no_kwargs(obj):
    return {}


def correlation(signal_type, cqrs_id, instance_pk, queue):
    return 'cid'


class CallableMeta:
    def __call__(self, obj, **kwargs):
        return {}


class HasMethod:
    def meta(self, obj, **kwargs):
        return {}


def config(**changes):
    """BASE with top-level keys replaced; ``master`` / ``replica`` dicts are merged into BASE's."""
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key in ('master', 'replica') and isinstance(value, dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def without(cfg, *keys):
    cfg = copy.deepcopy(cfg)
    for key in keys:
        cfg.pop(key, None)
    return cfg


def cqrs_messages(messages):
    return [m for m in messages if (m.id or '').startswith('dj_cqrs.')]


def settings_messages(cfg):
    with override_settings(CQRS=cfg):
        return cqrs_messages(run_checks(tags=[Tags.compatibility]))


def ids(messages):
    return [m.id for m in messages]


def only(messages, id_):
    found = [m for m in messages if m.id == id_]
    assert len(found) == 1, f'expected one {id_}, got {[(m.id, m.msg) for m in messages]}'
    message = found[0]
    assert message.hint, f'{id_} has no hint'
    assert isinstance(message.hint, str)
    return message


@pytest.fixture(autouse=True)
def registries():
    """The registries are class-level dicts: keep throwaway models out of other tests."""
    saved = [(reg, dict(reg.models), list(reg.duplicates)) for reg in (MasterRegistry, ReplicaRegistry)]
    yield
    for reg, models_, duplicates in saved:
        reg.models.clear()
        reg.models.update(models_)
        reg.duplicates[:] = duplicates


@pytest.fixture
def no_models():
    MasterRegistry.models.clear()
    ReplicaRegistry.models.clear()


@pytest.fixture
def only_masters():
    ReplicaRegistry.models.clear()


@pytest.fixture
def only_replicas():
    MasterRegistry.models.clear()


# -- settings: one test per id ---------------------------------------------------------------------
BAD_SETTINGS = [
    # id, CQRS value, exact message
    ('dj_cqrs.E002', [], 'CQRS configuration must be dict.'),
    ('dj_cqrs.E002', None, 'CQRS configuration must be dict.'),
    ('dj_cqrs.E002', 'dj_cqrs.transport.RabbitMQTransport', 'CQRS configuration must be dict.'),
    ('dj_cqrs.E003', without(BASE, 'transport'), 'CQRS transport is not set.'),
    ('dj_cqrs.E003', config(transport=''), 'CQRS transport is not set.'),
    ('dj_cqrs.E003', config(transport=None), 'CQRS transport is not set.'),
    (
        'dj_cqrs.E004',
        config(transport='dj_cqrs.transport.base.Nope'),
        "CQRS transport 'dj_cqrs.transport.base.Nope' can't be imported: "
        'Module "dj_cqrs.transport.base" does not define a "Nope" attribute/class.',
    ),
    (
        'dj_cqrs.E005',
        config(transport='django.db.models.Model'),
        'CQRS transport must be inherited from `dj_cqrs.transport.BaseTransport`.',
    ),
    (
        'dj_cqrs.E005',
        config(transport='os.path.join'),
        'CQRS transport must be inherited from `dj_cqrs.transport.BaseTransport`.',
    ),
    (
        'dj_cqrs.E005',
        config(transport=42),
        'CQRS transport must be inherited from `dj_cqrs.transport.BaseTransport`.',
    ),
    ('dj_cqrs.E006', config(master=None), 'CQRS master configuration must be dict.'),
    ('dj_cqrs.E006', config(master=[]), 'CQRS master configuration must be dict.'),
    ('dj_cqrs.E006', config(master='x'), 'CQRS master configuration must be dict.'),
    # §3.2: None, 'true' and 1 all fail.
    (
        'dj_cqrs.E007',
        config(master={'CQRS_AUTO_UPDATE_FIELDS': None}),
        'CQRS master CQRS_AUTO_UPDATE_FIELDS must be bool.',
    ),
    (
        'dj_cqrs.E007',
        config(master={'CQRS_AUTO_UPDATE_FIELDS': 'true'}),
        'CQRS master CQRS_AUTO_UPDATE_FIELDS must be bool.',
    ),
    (
        'dj_cqrs.E007',
        config(master={'CQRS_AUTO_UPDATE_FIELDS': 1}),
        'CQRS master CQRS_AUTO_UPDATE_FIELDS must be bool.',
    ),
    # §3.2: a dotted string is not imported for correlation_function.
    (
        'dj_cqrs.E008',
        config(master={'correlation_function': 'tests.unit.test_checks.correlation'}),
        'CQRS master correlation_function must be callable.',
    ),
    (
        'dj_cqrs.E008',
        config(master={'correlation_function': 42}),
        'CQRS master correlation_function must be callable.',
    ),
    (
        'dj_cqrs.E009',
        config(master={'meta_function': 'tests.unit.nope.meta'}),
        'CQRS master meta_function import error.',
    ),
    (
        'dj_cqrs.E009',
        config(master={'meta_function': 'tests.unit.test_checks.nope'}),
        'CQRS master meta_function import error.',
    ),
    # §3.2: inspect.isfunction: not a class, a callable instance, a bound method or a partial.
    (
        'dj_cqrs.E010',
        config(master={'meta_function': CallableMeta}),
        'CQRS master meta_function must be function.',
    ),
    (
        'dj_cqrs.E010',
        config(master={'meta_function': CallableMeta()}),
        'CQRS master meta_function must be function.',
    ),
    (
        'dj_cqrs.E010',
        config(master={'meta_function': HasMethod().meta}),
        'CQRS master meta_function must be function.',
    ),
    (
        'dj_cqrs.E010',
        config(master={'meta_function': functools.partial(meta_ok)}),
        'CQRS master meta_function must be function.',
    ),
    (
        'dj_cqrs.E010',
        config(master={'meta_function': 'tests.unit.test_checks.CallableMeta'}),
        'CQRS master meta_function must be function.',
    ),
    ('dj_cqrs.E010', config(master={'meta_function': 42}), 'CQRS master meta_function must be function.'),
    (
        'dj_cqrs.E011',
        config(master={'meta_function': meta_no_kwargs}),
        'CQRS master meta_function must support **kwargs.',
    ),
    (
        'dj_cqrs.E011',
        config(master={'meta_function': 'tests.unit.test_checks.meta_no_kwargs'}),
        'CQRS master meta_function must support **kwargs.',
    ),
    (
        'dj_cqrs.E011',
        config(master={'meta_function': lambda obj: {}}),
        'CQRS master meta_function must support **kwargs.',
    ),
    ('dj_cqrs.E012', without(BASE, 'queue'), 'CQRS queue is not set.'),
    ('dj_cqrs.E012', config(queue=''), 'CQRS queue is not set.'),
    ('dj_cqrs.E012', config(queue=None), 'CQRS queue is not set.'),
    ('dj_cqrs.E013', config(queue=123), 'CQRS queue must be string.'),
    ('dj_cqrs.E013', config(queue=['replica']), 'CQRS queue must be string.'),
    ('dj_cqrs.E014', config(replica=None), 'CQRS replica configuration must be dict.'),
    ('dj_cqrs.E014', config(replica=[]), 'CQRS replica configuration must be dict.'),
    (
        'dj_cqrs.E015',
        config(transport=RABBIT, url='redis://localhost:6379/0'),
        "CQRS url must be a valid 'amqp://' or 'amqps://' URL for RabbitMQTransport.",
    ),
    (
        'dj_cqrs.E015',
        config(transport='dj_cqrs.transport.rabbit_mq.RabbitMQTransport', url=5672),
        "CQRS url must be a valid 'amqp://' or 'amqps://' URL for RabbitMQTransport.",
    ),
    (
        'dj_cqrs.E016',
        config(transport=RABBIT, host='localhost', port='5672x'),
        'CQRS port must be an integer.',
    ),
    ('dj_cqrs.E016', config(transport=RABBIT, port='5672'), 'CQRS port must be an integer.'),
    # §3.2 warnings (upstream logs them and uses the default).
    (
        'dj_cqrs.W001',
        config(master={'CQRS_MESSAGE_TTL': 0}),
        'Settings CQRS_MESSAGE_TTL=0 is invalid, using default 86400.',
    ),
    (
        'dj_cqrs.W001',
        config(master={'CQRS_MESSAGE_TTL': -5}),
        'Settings CQRS_MESSAGE_TTL=-5 is invalid, using default 86400.',
    ),
    (
        'dj_cqrs.W001',
        config(master={'CQRS_MESSAGE_TTL': 'x'}),
        'Settings CQRS_MESSAGE_TTL=x is invalid, using default 86400.',
    ),
    (
        'dj_cqrs.W001',
        config(master={'CQRS_MESSAGE_TTL': 1.5}),
        'Settings CQRS_MESSAGE_TTL=1.5 is invalid, using default 86400.',
    ),
    (
        'dj_cqrs.W002',
        config(replica={'CQRS_MAX_RETRIES': -1}),
        'Replica setting CQRS_MAX_RETRIES=-1 is invalid, using default 30.',
    ),
    (
        'dj_cqrs.W002',
        config(replica={'CQRS_MAX_RETRIES': 'x'}),
        'Replica setting CQRS_MAX_RETRIES=x is invalid, using default 30.',
    ),
    (
        'dj_cqrs.W002',
        config(replica={'CQRS_MAX_RETRIES': 2.5}),
        'Replica setting CQRS_MAX_RETRIES=2.5 is invalid, using default 30.',
    ),
    # §3.2: None is invalid for CQRS_RETRY_DELAY (unlike CQRS_MAX_RETRIES).
    (
        'dj_cqrs.W003',
        config(replica={'CQRS_RETRY_DELAY': None}),
        'Replica setting CQRS_RETRY_DELAY=None is invalid, using default 2.',
    ),
    (
        'dj_cqrs.W003',
        config(replica={'CQRS_RETRY_DELAY': -1}),
        'Replica setting CQRS_RETRY_DELAY=-1 is invalid, using default 2.',
    ),
    (
        'dj_cqrs.W003',
        config(replica={'CQRS_RETRY_DELAY': '2'}),
        'Replica setting CQRS_RETRY_DELAY=2 is invalid, using default 2.',
    ),
    (
        'dj_cqrs.W004',
        config(replica={'delay_queue_max_size': 0}),
        'Settings delay_queue_max_size=0 is invalid, using default 1000.',
    ),
    (
        'dj_cqrs.W004',
        config(replica={'delay_queue_max_size': -3}),
        'Settings delay_queue_max_size=-3 is invalid, using default 1000.',
    ),
    (
        'dj_cqrs.W004',
        config(replica={'delay_queue_max_size': 'x'}),
        'Settings delay_queue_max_size=x is invalid, using default 1000.',
    ),
    (
        'dj_cqrs.W004',
        config(replica={'CQRS_DELAY_QUEUE_MAX_SIZE': 0}),
        'Settings CQRS_DELAY_QUEUE_MAX_SIZE=0 is invalid, using default 1000.',
    ),
    (
        'dj_cqrs.W007',
        config(replica={'delay_queue_max_size': 5, 'CQRS_DELAY_QUEUE_MAX_SIZE': 6}),
        'Both delay_queue_max_size and CQRS_DELAY_QUEUE_MAX_SIZE are set; delay_queue_max_size is used.',
    ),
    (
        'dj_cqrs.W005',
        config(replica={'dead_message_ttl': 0}),
        'Settings dead_message_ttl=0 is invalid, using default 864000.',
    ),
    (
        'dj_cqrs.W005',
        config(replica={'dead_message_ttl': 'x'}),
        'Settings dead_message_ttl=x is invalid, using default 864000.',
    ),
    (
        'dj_cqrs.W006',
        config(replica={'CQRS_QUERY_TIMEOUT': 'abc'}),
        "Settings CQRS_QUERY_TIMEOUT='abc' is invalid, using 0 (off).",
    ),
    (
        'dj_cqrs.W006',
        config(replica={'CQRS_QUERY_TIMEOUT': [1]}),
        'Settings CQRS_QUERY_TIMEOUT=[1] is invalid, using 0 (off).',
    ),
    ('dj_cqrs.W009', config(foo=1, CQRS_MESSAGE_TTL=3), 'Unknown CQRS setting(s): CQRS_MESSAGE_TTL, foo.'),
    (
        'dj_cqrs.W010',
        config(master={'CQRS_MESSAGE_TTLS': 1}),
        'Unknown CQRS master setting(s): CQRS_MESSAGE_TTLS.',
    ),
    (
        'dj_cqrs.W011',
        config(replica={'CQRS_MAX_RETRY': 1, 'dead_letter_queues': 'x'}),
        'Unknown CQRS replica setting(s): CQRS_MAX_RETRY, dead_letter_queues.',
    ),
]


@pytest.mark.parametrize(
    ('id_', 'cfg', 'message'), BAD_SETTINGS, ids=[f'{case[0]}-{i}' for i, case in enumerate(BAD_SETTINGS)]
)
def test_bad_setting_is_reported(id_, cfg, message):
    messages = settings_messages(cfg)
    found = only(messages, id_)
    assert found.msg == message
    expected_level = Error if id_.startswith('dj_cqrs.E') else Warning
    assert type(found) is expected_level
    # Exactly the problem introduced, nothing else.
    assert ids(messages) == [id_]


def test_every_settings_id_of_checks_py_is_covered():
    source = Path(checks.__file__).read_text()
    declared = {f'dj_cqrs.E{int(n):03d}' for n in re.findall(r'_error\(\s*(\d+),', source)}
    declared |= {f'dj_cqrs.W{int(n):03d}' for n in re.findall(r'_warning\(\s*(\d+),', source)}
    covered = (
        {case[0] for case in BAD_SETTINGS} | {'dj_cqrs.E001', 'dj_cqrs.E020', 'dj_cqrs.W021'} | set(MODEL_IDS)
    )
    assert declared == covered


def test_e001_cqrs_setting_missing():
    with override_settings():
        del settings.CQRS
        messages = cqrs_messages(run_checks(tags=[Tags.compatibility]))
    found = only(messages, 'dj_cqrs.E001')
    assert found.msg == 'CQRS configuration must be set in Django project settings.'
    assert isinstance(found, Error)
    assert ids(messages) == ['dj_cqrs.E001']


@pytest.mark.usefixtures('no_models')
def test_missing_cqrs_setting_is_fine_without_models():
    # §3.2 step 1: nothing to check when no model uses CQRS.
    with override_settings():
        del settings.CQRS
        assert cqrs_messages(run_checks(tags=[Tags.compatibility])) == []


@pytest.mark.usefixtures('no_models')
def test_present_cqrs_dict_is_checked_even_without_models():
    # Deliberate difference (docs/compatibility.md): upstream skips validation without models.
    assert ids(settings_messages(config(transport='django.db.models.Model'))) == ['dj_cqrs.E005']
    assert ids(settings_messages([])) == ['dj_cqrs.E002']


def test_e004_hint_names_the_kombu_extra():
    messages = settings_messages(config(transport='dj_cqrs.transport.kombu_missing.KombuTransport'))
    found = only(messages, 'dj_cqrs.E004')
    assert found.msg.startswith(
        "CQRS transport 'dj_cqrs.transport.kombu_missing.KombuTransport' can't be imported: "
    )
    assert 'pip install' in found.hint


def test_e004_for_a_module_that_does_not_exist():
    messages = settings_messages(config(transport='no_such_module.Transport'))
    found = only(messages, 'dj_cqrs.E004')
    assert (
        found.msg
        == "CQRS transport 'no_such_module.Transport' can't be imported: No module named 'no_such_module'."
    )


def test_transport_error_stops_transport_checks_but_not_the_others():
    cfg = config(
        transport='dj_cqrs.transport.base.Nope', queue=1, master=None, replica={'CQRS_MAX_RETRIES': -1}
    )
    assert ids(settings_messages(cfg)) == ['dj_cqrs.E004', 'dj_cqrs.E006', 'dj_cqrs.E013', 'dj_cqrs.W002']


def test_meta_function_import_error_hides_the_other_meta_checks():
    cfg = config(master={'meta_function': 'tests.unit.nope.meta', 'CQRS_AUTO_UPDATE_FIELDS': 'x'})
    assert ids(settings_messages(cfg)) == ['dj_cqrs.E007', 'dj_cqrs.E009']


def test_replica_not_a_dict_still_reports_the_queue():
    assert ids(settings_messages(config(queue=None, replica=None))) == ['dj_cqrs.E012', 'dj_cqrs.E014']


def test_all_problems_at_once():
    cfg = {
        'transport': RABBIT,
        'url': 'http://localhost',
        'queue': 5,
        'exchang': 'typo',
        'master': {
            'CQRS_AUTO_UPDATE_FIELDS': 'yes',
            'CQRS_MESSAGE_TTL': 0,
            'correlation_function': 'a.b',
            'meta_function': meta_no_kwargs,
            'extra': 1,
        },
        'replica': {
            'CQRS_MAX_RETRIES': -1,
            'CQRS_RETRY_DELAY': None,
            'delay_queue_max_size': 0,
            'dead_message_ttl': -1,
            'CQRS_QUERY_TIMEOUT': 'x',
            'extra': 1,
        },
    }
    assert sorted(ids(settings_messages(cfg))) == [
        'dj_cqrs.E007',
        'dj_cqrs.E008',
        'dj_cqrs.E011',
        'dj_cqrs.E013',
        'dj_cqrs.E015',
        'dj_cqrs.W001',
        'dj_cqrs.W002',
        'dj_cqrs.W003',
        'dj_cqrs.W004',
        'dj_cqrs.W005',
        'dj_cqrs.W006',
        'dj_cqrs.W009',
        'dj_cqrs.W010',
        'dj_cqrs.W011',
    ]


# -- E020: the app's tables -------------------------------------------------------------------------
@pytest.mark.django_db
def test_e020_and_w021_tables_present_in_the_test_database():
    assert checks.check_tables(['default']) == []
    assert cqrs_messages(run_checks(tags=[Tags.database], databases=['default'])) == []


@pytest.mark.django_db
def test_e020_tables_missing():
    connection = connections['default']
    with mock.patch.object(connection.introspection, 'table_names', return_value=['other']):
        messages = cqrs_messages(checks.check_tables(['default']))
    found = only(messages, 'dj_cqrs.E020')
    assert found.msg == "The dj_cqrs tables are missing in database 'default'."
    assert found.hint == 'Run `manage.py migrate dj_cqrs --database default`.'


@pytest.mark.django_db
def test_w021_outbox_table_missing_is_a_registered_database_warning():
    connection = connections['default']
    with mock.patch.object(connection.introspection, 'table_names', return_value=['other']):
        messages = cqrs_messages(run_checks(tags=[Tags.database], databases=['default']))
    found = only(messages, 'dj_cqrs.W021')
    assert found.level == WARNING
    assert found.hint == 'Run `manage.py migrate dj_cqrs --database default`.'
    assert 'E020' not in {m.id for m in messages}, 'E020 would stop migrate; only cqrs_consume runs it'


def test_e020_not_run_without_databases():
    assert checks.check_tables(databases=None) == []


@pytest.mark.usefixtures('only_masters')
@pytest.mark.django_db
def test_e020_not_needed_without_replicas():
    connection = connections['default']
    with mock.patch.object(connection.introspection, 'table_names', return_value=[]):
        assert checks.check_tables(databases=['default']) == []


# -- valid configurations ----------------------------------------------------------------------------
VALID = [
    BASE,
    settings.CQRS,
    {'transport': MOCK, 'queue': 'q'},
    {'transport': 'dj_cqrs.transport.mock.TransportMock', 'queue': 'q', 'master': {}, 'replica': {}},
    {'transport': RABBIT, 'queue': 'q', 'url': 'amqp://guest:guest@localhost:5672/'},
    {'transport': RABBIT, 'queue': 'q', 'url': 'amqps://u:p%40ss@rabbit.example:5671/vhost?heartbeat=30'},
    {'transport': 'dj_cqrs.transport.rabbit_mq.RabbitMQTransport', 'queue': 'q'},
    {'transport': RABBIT, 'queue': 'q', 'host': 'localhost', 'port': 5672, 'user': 'u', 'password': 'p'},
    {'transport': RABBIT, 'queue': 'q', 'url': 'amqp://localhost', 'port': 'ignored-with-url'},
    {'transport': MOCK, 'queue': 'q', 'exchange': 'cqrs_other', 'consumer_prefetch_count': 50},
    {
        'transport': MOCK,
        'queue': 'q',
        'master': {
            'CQRS_AUTO_UPDATE_FIELDS': True,
            'CQRS_MESSAGE_TTL': None,
            'correlation_function': correlation,
            'meta_function': meta_ok,
        },
        'replica': {
            'CQRS_MAX_RETRIES': None,
            'CQRS_RETRY_DELAY': 0,
            'delay_queue_max_size': None,
            'dead_letter_queue': 'dlq',
            'dead_message_ttl': None,
            'CQRS_QUERY_TIMEOUT': 1000,
            'CQRS_LOG_TIMED_OUT_QUERIES': True,
            'CQRS_QUERY_LOGGER': 'timeouts',
        },
    },
    {
        'transport': MOCK,
        'queue': 'q',
        'master': {
            'CQRS_AUTO_UPDATE_FIELDS': False,
            'CQRS_MESSAGE_TTL': 1,
            'correlation_function': None,
            'meta_function': 'tests.unit.test_checks.meta_ok',
        },
        'replica': {
            'CQRS_MAX_RETRIES': 0,
            'CQRS_RETRY_DELAY': 5,
            'delay_queue_max_size': 1,
            'dead_message_ttl': 1,
            'CQRS_QUERY_TIMEOUT': '100',
        },
    },
    # Falsy correlation / meta functions mean "none" (§3.2).
    {'transport': MOCK, 'queue': 'q', 'master': {'correlation_function': '', 'meta_function': ''}},
    {'transport': MOCK, 'queue': 'q', 'master': {'meta_function': lambda obj, **kw: {}}},
    # bool is an int (§3.2 note): True passes the integer checks.
    {
        'transport': MOCK,
        'queue': 'q',
        'master': {'CQRS_MESSAGE_TTL': True},
        'replica': {'CQRS_MAX_RETRIES': True, 'CQRS_RETRY_DELAY': True, 'delay_queue_max_size': True},
    },
    {'transport': MOCK, 'queue': 'q', 'replica': {'CQRS_DELAY_QUEUE_MAX_SIZE': 10}},
    {'transport': MOCK, 'queue': 'q', 'replica': {'CQRS_QUERY_TIMEOUT': None}},
]


@pytest.mark.parametrize('cfg', VALID, ids=[f'valid-{i}' for i in range(len(VALID))])
def test_valid_configuration_has_no_messages(cfg):
    with override_settings(CQRS=cfg):
        assert cqrs_messages(run_checks()) == []


@pytest.mark.parametrize(
    'transport',
    [
        'dj_cqrs.transport.RabbitMQTransport',
        'dj_cqrs.transport.rabbit_mq.RabbitMQTransport',
        'dj_cqrs.transport.mock.TransportMock',
        'dj_cqrs.testing.LoopbackTransport',
        'dj_cqrs.testing.MemoryTransport',
        'dj_cqrs.transport.KombuTransport',
        'dj_cqrs.transport.kombu.KombuTransport',
    ],
)
def test_upstream_transport_paths_pass(transport):
    assert settings_messages(config(transport=transport)) == []


def test_transport_class_object_is_accepted():
    from dj_cqrs.transport.mock import TransportMock

    assert settings_messages(config(transport=TransportMock)) == []


@pytest.mark.usefixtures('only_masters')
def test_master_only_service_needs_no_queue():
    assert settings_messages({'transport': MOCK}) == []
    assert settings_messages({'transport': MOCK, 'master': {'CQRS_MESSAGE_TTL': 10}}) == []


@pytest.mark.usefixtures('only_masters')
def test_replica_section_without_replica_models_requires_a_queue():
    # §3.2 step 6: replica validation runs if there are replica models or a 'replica' key exists.
    assert ids(settings_messages({'transport': MOCK, 'replica': {}})) == ['dj_cqrs.E012']


@pytest.mark.usefixtures('only_replicas')
def test_replica_only_service_skips_master_checks_without_master_section():
    assert settings_messages({'transport': MOCK, 'queue': 'q'}) == []


@pytest.mark.usefixtures('only_replicas')
def test_master_section_without_master_models_is_checked():
    # §3.2 step 5: master validation runs if there are master models or a 'master' key exists.
    assert ids(settings_messages({'transport': MOCK, 'queue': 'q', 'master': None})) == ['dj_cqrs.E006']


@pytest.mark.usefixtures('no_models')
def test_no_models_no_sections_nothing_required():
    assert settings_messages({'transport': MOCK}) == []


def test_checks_never_mutate_the_settings_dict():
    cfg = {'transport': MOCK, 'queue': 'q', 'master': {'meta_function': 'tests.unit.test_checks.meta_ok'}}
    before = copy.deepcopy(cfg)
    with override_settings(CQRS=cfg):
        run_checks()
        # conf resolves the dotted path without storing it back (upstream stores it, §3.2).
        assert cqrs_settings.master.meta_function is meta_ok
        assert cqrs_settings.master.message_ttl == 86400
        assert cqrs_settings.replica.max_retries == 30
    assert cfg == before
    assert 'replica' not in cfg


@pytest.mark.parametrize(
    ('cfg', 'read', 'expected'),
    [
        (config(master={'CQRS_MESSAGE_TTL': 0}), lambda s: s.master.message_ttl, 86400),
        (config(master={'CQRS_MESSAGE_TTL': None}), lambda s: s.master.message_ttl, None),
        (config(master={'CQRS_AUTO_UPDATE_FIELDS': 'true'}), lambda s: s.master.auto_update_fields, False),
        (config(master={'correlation_function': 'a.b'}), lambda s: s.master.correlation_function, None),
        (config(master={'meta_function': meta_no_kwargs}), lambda s: s.master.meta_function, None),
        (config(replica={'CQRS_MAX_RETRIES': -1}), lambda s: s.replica.max_retries, 30),
        (config(replica={'CQRS_MAX_RETRIES': None}), lambda s: s.replica.max_retries, None),
        (config(replica={'CQRS_RETRY_DELAY': None}), lambda s: s.replica.retry_delay, 2),
        (config(replica={'delay_queue_max_size': 0}), lambda s: s.replica.delay_queue_max_size, 1000),
        (config(replica={'CQRS_DELAY_QUEUE_MAX_SIZE': 0}), lambda s: s.replica.delay_queue_max_size, 1000),
        (config(replica={'dead_message_ttl': 0}), lambda s: s.replica.dead_message_ttl, 864000),
        (config(replica={'CQRS_QUERY_TIMEOUT': 'abc'}), lambda s: s.replica.query_timeout, 0),
        (config(master=None), lambda s: s.master.message_ttl, 86400),
        (config(replica=None), lambda s: s.replica.max_retries, 30),
    ],
)
def test_reported_value_falls_back_as_the_message_says(cfg, read, expected):
    with override_settings(CQRS=cfg):
        assert read(cqrs_settings) == expected


def test_checks_are_registered_with_django():
    with override_settings(CQRS=config(queue=1)):
        assert 'dj_cqrs.E013' in ids(run_checks())
        assert 'dj_cqrs.E013' in ids(run_checks(tags=[Tags.compatibility]))
        assert 'dj_cqrs.E013' not in ids(run_checks(tags=[Tags.models]))


# -- models ------------------------------------------------------------------------------------------
MODEL_IDS = {
    'dj_cqrs.E101',
    'dj_cqrs.E102',
    'dj_cqrs.E103',
    'dj_cqrs.E104',
    'dj_cqrs.E105',
    'dj_cqrs.E106',
    'dj_cqrs.E107',
    'dj_cqrs.E108',
    'dj_cqrs.E109',
    'dj_cqrs.E110',
    'dj_cqrs.E111',
    'dj_cqrs.E112',
    'dj_cqrs.E113',
}
SERIALIZER = 'tests.testapp.serializers.AuthorSerializer'


def model_messages(model):
    return cqrs_messages(model.check(databases=[]))


def assert_model_error(model, id_, message):
    messages = model_messages(model)
    found = only(messages, id_)
    assert isinstance(found, Error)
    assert found.msg == message
    assert found.obj is model
    assert ids(messages) == [id_]


def master_model(name, **attrs):
    """A throwaway concrete master model (call inside ``isolate_apps``)."""
    body = {
        '__module__': __name__,
        'name': models.CharField(max_length=10),
        'publisher': models.ForeignKey('testapp.Publisher', null=True, on_delete=models.CASCADE),
        'Meta': type('Meta', (), {'app_label': 'testapp'}),
        **attrs,
    }
    return type(name, (MasterMixin,), body)


def replica_model(name, **attrs):
    body = {
        '__module__': __name__,
        'id': models.IntegerField(primary_key=True),
        'name': models.CharField(max_length=10),
        'Meta': type('Meta', (), {'app_label': 'testapp'}),
        **attrs,
    }
    return type(name, (ReplicaMixin,), body)


@isolate_apps('tests.testapp')
def test_valid_throwaway_models_have_no_errors():
    master = master_model('OkMaster', CQRS_ID='ok_master', CQRS_FIELDS=('id', 'name', 'publisher'))
    tracked = master_model('OkTracked', CQRS_ID='ok_tracked', CQRS_TRACKED_FIELDS=['name', 'publisher'])
    tracked_all = master_model('OkTrackedAll', CQRS_ID='ok_tracked_all', CQRS_TRACKED_FIELDS='__all__')
    serialized = master_model('OkSerialized', CQRS_ID='ok_serialized', CQRS_SERIALIZER=SERIALIZER)
    replica = replica_model('OkReplica', CQRS_ID='ok_replica', CQRS_MAPPING={'id': 'id', 'title': 'name'})
    for model in (master, tracked, tracked_all, serialized, replica):
        assert model_messages(model) == [], model
    assert MasterRegistry.models['ok_master'] is master
    assert ReplicaRegistry.models['ok_replica'] is replica


@isolate_apps('tests.testapp')
def test_e101_master_without_cqrs_id():
    model = master_model('NoIdMaster')  # no AssertionError at class creation (upstream raises)
    assert_model_error(model, 'dj_cqrs.E101', 'CQRS_ID must be set for every model, that uses CQRS.')
    assert model not in MasterRegistry.models.values()


@isolate_apps('tests.testapp')
def test_e101_replica_without_cqrs_id():
    model = replica_model('NoIdReplica')
    assert_model_error(model, 'dj_cqrs.E101', 'CQRS_ID must be set for every model, that uses CQRS.')


@isolate_apps('tests.testapp')
def test_e102_duplicate_master_cqrs_id():
    first = master_model('FirstMaster', CQRS_ID='dup_master')
    second = master_model('SecondMaster', CQRS_ID='dup_master')
    assert model_messages(first) == []
    assert_model_error(second, 'dj_cqrs.E102', "Two models can't have the same CQRS_ID: dup_master.")
    assert 'FirstMaster' in only(model_messages(second), 'dj_cqrs.E102').hint
    assert MasterRegistry.models['dup_master'] is first


@isolate_apps('tests.testapp')
def test_e102_duplicate_of_an_existing_master():
    model = master_model('AnotherBasic', CQRS_ID='basic')
    assert_model_error(model, 'dj_cqrs.E102', "Two models can't have the same CQRS_ID: basic.")


@isolate_apps('tests.testapp')
def test_e102_duplicate_replica_cqrs_id():
    first = replica_model('FirstReplica', CQRS_ID='dup_replica')
    second = replica_model('SecondReplica', CQRS_ID='dup_replica')
    assert model_messages(first) == []
    assert_model_error(second, 'dj_cqrs.E102', "Two models can't have the same CQRS_ID: dup_replica.")


@isolate_apps('tests.testapp')
def test_same_cqrs_id_on_master_and_replica_is_allowed():
    # §2.10: separate registries, so a service may be master and replica of the same id.
    master = master_model('BothMaster', CQRS_ID='both')
    replica = replica_model('BothReplica', CQRS_ID='both')
    assert model_messages(master) == []
    assert model_messages(replica) == []


@isolate_apps('tests.testapp')
def test_e103_fields_with_serializer():
    model = master_model(
        'FieldsAndSerializer', CQRS_ID='e103', CQRS_FIELDS=('id',), CQRS_SERIALIZER=SERIALIZER
    )
    assert_model_error(
        model,
        'dj_cqrs.E103',
        "Model FieldsAndSerializer: CQRS_FIELDS can't be set together with CQRS_SERIALIZER.",
    )


@isolate_apps('tests.testapp')
def test_e104_duplicate_tracked_fields():
    model = master_model('DupTracked', CQRS_ID='e104', CQRS_TRACKED_FIELDS=['name', 'name'])
    assert_model_error(
        model, 'dj_cqrs.E104', 'Duplicate names in CQRS_TRACKED_FIELDS field for model DupTracked.'
    )


@isolate_apps('tests.testapp')
def test_e105_unknown_tracked_field():
    model = master_model('UnknownTracked', CQRS_ID='e105', CQRS_TRACKED_FIELDS=('name', 'nope'))
    assert_model_error(
        model, 'dj_cqrs.E105', 'CQRS_TRACKED_FIELDS field is not correctly set for model UnknownTracked.'
    )
    assert 'nope' in only(model_messages(model), 'dj_cqrs.E105').hint


@isolate_apps('tests.testapp')
def test_e105_tracked_fields_use_field_names_not_attnames():
    model = master_model('AttnameTracked', CQRS_ID='e105b', CQRS_TRACKED_FIELDS=['publisher_id'])
    assert_model_error(
        model, 'dj_cqrs.E105', 'CQRS_TRACKED_FIELDS field is not correctly set for model AttnameTracked.'
    )


@pytest.mark.parametrize('tracked', ['name', 'all', {'name'}, 1])
@isolate_apps('tests.testapp')
def test_e106_tracked_fields_of_the_wrong_form(tracked):
    model = master_model('BadTracked', CQRS_ID='e106', CQRS_TRACKED_FIELDS=tracked)
    # Upstream's message has no trailing period (§2.3).
    assert_model_error(
        model, 'dj_cqrs.E106', 'Model BadTracked: Invalid configuration for CQRS_TRACKED_FIELDS'
    )


@isolate_apps('tests.testapp')
def test_bad_tracked_fields_install_no_tracker():
    from dj_cqrs.constants import FIELDS_TRACKER_FIELD_NAME

    bad = master_model('NoTracker', CQRS_ID='no_tracker', CQRS_TRACKED_FIELDS=['nope'])
    good = master_model('HasTracker', CQRS_ID='has_tracker', CQRS_TRACKED_FIELDS=['name'])
    assert getattr(bad, FIELDS_TRACKER_FIELD_NAME, None) is None
    assert getattr(good, FIELDS_TRACKER_FIELD_NAME, None) is not None


@isolate_apps('tests.testapp')
def test_e107_duplicate_fields():
    model = master_model('DupFields', CQRS_ID='e107', CQRS_FIELDS=['id', 'name', 'name'])
    assert_model_error(model, 'dj_cqrs.E107', 'Duplicate names in CQRS_FIELDS field for model DupFields.')


@isolate_apps('tests.testapp')
def test_e108_pk_missing_from_fields():
    model = master_model('NoPkFields', CQRS_ID='e108', CQRS_FIELDS=('name',))
    assert_model_error(model, 'dj_cqrs.E108', 'PK is not in CQRS_FIELDS for model NoPkFields.')
    assert "'id'" in only(model_messages(model), 'dj_cqrs.E108').hint


@isolate_apps('tests.testapp')
def test_e109_unknown_field():
    model = master_model('UnknownFields', CQRS_ID='e109', CQRS_FIELDS=('id', 'nope'))
    assert_model_error(
        model, 'dj_cqrs.E109', 'CQRS_FIELDS field is not correctly set for model UnknownFields.'
    )


@isolate_apps('tests.testapp')
def test_e109_fields_use_field_names_not_attnames():
    model = master_model('AttnameFields', CQRS_ID='e109b', CQRS_FIELDS=('id', 'publisher_id'))
    assert_model_error(
        model, 'dj_cqrs.E109', 'CQRS_FIELDS field is not correctly set for model AttnameFields.'
    )


@isolate_apps('tests.testapp')
def test_e109_fields_not_a_list():
    model = master_model('StringFields', CQRS_ID='e109c', CQRS_FIELDS='name')
    assert_model_error(
        model, 'dj_cqrs.E109', 'CQRS_FIELDS field is not correctly set for model StringFields.'
    )


@pytest.mark.parametrize('path', ['tests.testapp.serializers.Nope', 'tests.no_such_module.Serializer'])
@isolate_apps('tests.testapp')
def test_e110_serializer_cannot_be_imported(path):
    model = master_model('BadSerializer', CQRS_ID='e110', CQRS_SERIALIZER=path)
    # The upstream message uses the class repr (§2.1), raised there only at publish time.
    assert_model_error(model, 'dj_cqrs.E110', f"Model {model}: CQRS_SERIALIZER can't be imported.")
    assert str(model).startswith("<class '")


@isolate_apps('tests.testapp')
def test_e111_duplicate_mapping_values():
    model = replica_model('DupMapping', CQRS_ID='e111', CQRS_MAPPING={'id': 'id', 'a': 'name', 'b': 'name'})
    assert_model_error(model, 'dj_cqrs.E111', 'Duplicate names in CQRS_MAPPING field for model DupMapping.')


@isolate_apps('tests.testapp')
def test_e111_mapping_not_a_dict():
    model = replica_model('ListMapping', CQRS_ID='e111b', CQRS_MAPPING=['id', 'name'])
    assert_model_error(model, 'dj_cqrs.E111', 'CQRS_MAPPING must be a dict for model ListMapping.')


@isolate_apps('tests.testapp')
def test_e112_mapping_without_pk():
    model = replica_model('NoPkMapping', CQRS_ID='e112', CQRS_MAPPING={'title': 'name'})
    assert_model_error(model, 'dj_cqrs.E112', 'PK is not in CQRS_MAPPING for model NoPkMapping.')


@isolate_apps('tests.testapp')
def test_e113_mapping_to_unknown_field():
    model = replica_model('UnknownMapping', CQRS_ID='e113', CQRS_MAPPING={'id': 'id', 'x': 'nope'})
    assert_model_error(
        model, 'dj_cqrs.E113', 'CQRS_MAPPING field is not correctly set for model UnknownMapping.'
    )


@isolate_apps('tests.testapp')
def test_several_master_problems_are_reported_together():
    model = master_model(
        'ManyProblems', CQRS_FIELDS=['id', 'id'], CQRS_TRACKED_FIELDS='x', CQRS_SERIALIZER=None
    )
    assert ids(model_messages(model)) == ['dj_cqrs.E101', 'dj_cqrs.E106', 'dj_cqrs.E107']


# -- registration (deliberate differences, see docs/compatibility.md) -----------------------------
@isolate_apps('tests.testapp')
def test_abstract_master_subclasses_are_not_registered():
    before = dict(MasterRegistry.models)

    class AbstractBase(MasterMixin):
        name = models.CharField(max_length=10)

        class Meta:
            abstract = True
            app_label = 'testapp'

    class AbstractWithId(MasterMixin):
        CQRS_ID = 'abstract_id'

        class Meta:
            abstract = True
            app_label = 'testapp'

    assert MasterRegistry.models == before
    assert MasterRegistry.duplicates == []

    class Child(AbstractWithId):
        class Meta:
            app_label = 'testapp'

    assert MasterRegistry.models['abstract_id'] is Child
    assert model_messages(Child) == []


@isolate_apps('tests.testapp')
def test_proxy_of_a_master_keeps_the_concrete_registration():
    concrete = master_model('ProxiedMaster', CQRS_ID='proxied')
    proxy = type(
        'ProxyMaster',
        (concrete,),
        {'__module__': __name__, 'Meta': type('Meta', (), {'proxy': True, 'app_label': 'testapp'})},
    )
    assert MasterRegistry.models['proxied'] is concrete
    assert MasterRegistry.duplicates == []
    assert model_messages(proxy) == []


@isolate_apps('tests.testapp')
def test_raw_master_is_registered_only_by_master_meta_register():
    model = type(
        'RawOne',
        (RawMasterMixin,),
        {'__module__': __name__, 'CQRS_ID': 'raw_one', 'Meta': type('Meta', (), {'app_label': 'testapp'})},
    )
    assert 'raw_one' not in MasterRegistry.models
    assert MasterMeta.register(model) is model
    assert MasterRegistry.models['raw_one'] is model
    assert model_messages(model) == []


def test_replica_meta_register_returns_the_class():
    class CacheLike(RawReplicaMixin):
        CQRS_ID = 'cache_like'

    assert ReplicaMeta.register(CacheLike) is CacheLike
    assert ReplicaRegistry.models['cache_like'] is CacheLike

    @ReplicaMeta.register
    class Decorated(RawReplicaMixin):
        CQRS_ID = 'decorated'

    assert ReplicaRegistry.models['decorated'] is Decorated


def test_non_model_replica_problems_are_reported_by_run_checks():
    class BadMapping(RawReplicaMixin):
        CQRS_ID = 'bad_mapping_raw'
        CQRS_MAPPING = {'id': 'id', 'a': 'x', 'b': 'x'}

    class DupRaw(RawReplicaMixin):
        CQRS_ID = 'bad_mapping_raw'

    ReplicaMeta.register(BadMapping)
    ReplicaMeta.register(DupRaw)
    messages = cqrs_messages(run_checks(tags=[Tags.models]))
    e111 = only(messages, 'dj_cqrs.E111')
    assert e111.msg == 'Duplicate names in CQRS_MAPPING field for model BadMapping.'
    assert e111.obj is BadMapping
    e102 = only(messages, 'dj_cqrs.E102')
    assert e102.msg == "Two models can't have the same CQRS_ID: bad_mapping_raw."
    assert e102.obj is DupRaw


def test_non_model_replica_mapping_is_not_checked_against_fields():
    class FreeMapping(RawReplicaMixin):
        CQRS_ID = 'free_mapping'
        CQRS_MAPPING = {'id': 'anything', 'name': 'whatever'}

    ReplicaMeta.register(FreeMapping)
    assert cqrs_messages(run_checks(tags=[Tags.models])) == []


@isolate_apps('tests.testapp')
def test_abstract_replica_is_registered_and_checked_by_run_checks():
    class Tableless(ReplicaMixin):
        CQRS_ID = 'tableless_abstract'
        CQRS_NO_DB_OPERATIONS = True
        CQRS_MAPPING = {'id': 'id', 'nope': 'nope'}
        id = models.IntegerField(primary_key=True)

        class Meta:
            abstract = True
            app_label = 'testapp'

    assert ReplicaRegistry.models['tableless_abstract'] is Tableless
    messages = cqrs_messages(run_checks(tags=[Tags.models]))
    found = only(messages, 'dj_cqrs.E113')
    assert found.msg == 'CQRS_MAPPING field is not correctly set for model Tableless.'
    assert found.obj is Tableless


def test_e101_non_model_replica_without_cqrs_id():
    class NoId(RawReplicaMixin):
        pass

    ReplicaMeta.register(NoId)
    messages = cqrs_messages(run_checks(tags=[Tags.models]))
    assert only(messages, 'dj_cqrs.E101').obj is NoId


def test_w004_message_is_true_when_both_spellings_are_set():
    cfg = config(replica={'delay_queue_max_size': 5, 'CQRS_DELAY_QUEUE_MAX_SIZE': 0})
    with override_settings(CQRS=cfg):
        assert cqrs_settings.replica.delay_queue_max_size == 5
    for message in settings_messages(cfg):
        assert 'using default 1000' not in message.msg


def test_kombu_transport_options_are_a_known_setting():
    cfg = config(
        transport='dj_cqrs.transport.KombuTransport',
        url='filesystem://',
        transport_options={'data_folder_in': '/tmp/in', 'data_folder_out': '/tmp/in'},
    )
    assert settings_messages(cfg) == []


@pytest.mark.parametrize(
    'url', ['amqp://localhost:5672/?heartbeat=abc', 'amqp://localhost:abc/', 'amqp://localhost/?nope=1']
)
def test_e015_url_rejected_by_the_broker(url):
    assert ids(settings_messages(config(transport=RABBIT, url=url))) == ['dj_cqrs.E015']
