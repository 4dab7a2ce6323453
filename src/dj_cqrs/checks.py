"""System checks: every settings problem of UPSTREAM_SPEC §3.2 and every model problem of §2.3 and
§2.7, each with a stable id and a hint. Shown by ``manage.py check`` and run before ``migrate`` and
``cqrs_consume``. Nothing here raises; upstream's ``assert``\\ s become these errors.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from dj_cqrs.conf import (
    DEFAULT_MASTER_MESSAGE_TTL,
    DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE,
    DEFAULT_REPLICA_MAX_RETRIES,
    DEFAULT_REPLICA_RETRY_DELAY,
    MASTER_KEYS,
    REPLICA_KEYS,
    TOP_LEVEL_KEYS,
    accepts_var_kwargs,
    is_int,
)
from dj_cqrs.constants import ALL_BASIC_FIELDS
from dj_cqrs.registry import MasterRegistry, ReplicaRegistry


def _error(id_: int, msg: str, hint: str, obj: Any = None) -> Error:
    return Error(msg, hint=hint, obj=obj, id=f'dj_cqrs.E{id_:03d}')


def _warning(id_: int, msg: str, hint: str, obj: Any = None) -> Warning:
    return Warning(msg, hint=hint, obj=obj, id=f'dj_cqrs.W{id_:03d}')


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    has_masters = bool(MasterRegistry.models)
    has_replicas = bool(ReplicaRegistry.models)
    if not hasattr(settings, 'CQRS'):
        if not (has_masters or has_replicas):
            return []
        return [
            _error(
                1,
                'CQRS configuration must be set in Django project settings.',
                "Add CQRS = {'transport': 'dj_cqrs.transport.RabbitMQTransport', 'url': 'amqp://...'} "
                'to your settings.',
            )
        ]
    config = settings.CQRS
    if not isinstance(config, dict):
        return [_error(2, 'CQRS configuration must be dict.', f'settings.CQRS is a {type(config).__name__}.')]
    errors: list[Any] = []
    errors += _check_transport(config)
    unknown = sorted(set(config) - TOP_LEVEL_KEYS)
    if unknown:
        errors.append(
            _warning(
                9,
                f'Unknown CQRS setting(s): {", ".join(unknown)}.',
                f'Known keys are {", ".join(sorted(TOP_LEVEL_KEYS))}; check the spelling.',
            )
        )
    if has_masters or 'master' in config:
        errors += _check_master(config)
    if has_replicas or 'replica' in config:
        errors += _check_replica(config)
    return errors


def _check_transport(config: dict[str, Any]) -> list[Any]:
    from dj_cqrs.transport.base import BaseTransport

    path = config.get('transport')
    if not path:
        return [
            _error(
                3,
                'CQRS transport is not set.',
                "Set CQRS['transport'], e.g. 'dj_cqrs.transport.RabbitMQTransport'.",
            )
        ]
    transport = path
    if isinstance(path, str):
        try:
            transport = import_string(path)
        except Exception as exc:  # a module that fails to import may raise anything
            return [_error(4, f"CQRS transport '{path}' can't be imported: {exc}.", _transport_hint(path))]
    if not (inspect.isclass(transport) and issubclass(transport, BaseTransport)):
        return [
            _error(
                5,
                'CQRS transport must be inherited from `dj_cqrs.transport.BaseTransport`.',
                f'{path!r} is not a BaseTransport subclass.',
            )
        ]
    from dj_cqrs.transport.rabbit_mq import RabbitMQTransport

    if issubclass(transport, RabbitMQTransport):
        url = config.get('url')
        if url is not None and not _valid_amqp_url(url):
            return [
                _error(
                    15,
                    "CQRS url must be a valid 'amqp://' or 'amqps://' URL for RabbitMQTransport.",
                    "Use CQRS['url'] = 'amqp://user:password@host:5672/vhost' with options pika knows "
                    '(heartbeat, connection_attempts, ...).',
                )
            ]
        port = config.get('port')
        if url is None and port is not None and not is_int(port):
            return [_error(16, 'CQRS port must be an integer.', f"CQRS['port'] is {port!r}.")]
    return []


def _valid_amqp_url(url: Any) -> bool:
    if not isinstance(url, str) or not url.startswith(('amqp://', 'amqps://')):
        return False
    from dj_cqrs.transport.rabbitmq import RabbitMQBroker

    try:
        RabbitMQBroker(url=url).connection_parameters()
    except Exception:
        return False
    return True


def _transport_hint(path: str) -> str:
    if 'Kombu' in path or 'kombu' in path:
        return "The Kombu transport needs kombu: pip install 'django-cqrs[kombu]'."
    return "Use 'dj_cqrs.transport.RabbitMQTransport', 'dj_cqrs.transport.KombuTransport' or your own class."


def _check_master(config: dict[str, Any]) -> list[Any]:
    if 'master' not in config:
        return []
    master = config['master']
    if not isinstance(master, dict):
        return [
            _error(6, 'CQRS master configuration must be dict.', "Set CQRS['master'] to a dict or remove it.")
        ]
    errors: list[Any] = []
    unknown = sorted(set(master) - MASTER_KEYS)
    if unknown:
        errors.append(
            _warning(
                10,
                f'Unknown CQRS master setting(s): {", ".join(unknown)}.',
                f'Known: {", ".join(sorted(MASTER_KEYS))}.',
            )
        )
    if 'CQRS_AUTO_UPDATE_FIELDS' in master and not isinstance(master['CQRS_AUTO_UPDATE_FIELDS'], bool):
        errors.append(_error(7, 'CQRS master CQRS_AUTO_UPDATE_FIELDS must be bool.', 'Use True or False.'))
    ttl = master.get('CQRS_MESSAGE_TTL', DEFAULT_MASTER_MESSAGE_TTL)
    if ttl is not None and (not is_int(ttl) or ttl < 1):
        errors.append(
            _warning(
                1,
                f'Settings CQRS_MESSAGE_TTL={ttl} is invalid, using default {DEFAULT_MASTER_MESSAGE_TTL}.',
                'Use a positive number of seconds, or None for messages that never expire.',
            )
        )
    correlation = master.get('correlation_function')
    if correlation and not callable(correlation):
        errors.append(
            _error(
                8,
                'CQRS master correlation_function must be callable.',
                'Pass the function itself (a dotted path is not imported for this setting).',
            )
        )
    meta_function = master.get('meta_function')
    if meta_function:
        if isinstance(meta_function, str):
            try:
                meta_function = import_string(meta_function)
            except ImportError:
                return [
                    *errors,
                    _error(
                        9, 'CQRS master meta_function import error.', f'{meta_function!r} cannot be imported.'
                    ),
                ]
        if not inspect.isfunction(meta_function):
            errors.append(
                _error(
                    10,
                    'CQRS master meta_function must be function.',
                    'Use a plain function, not a class or callable object.',
                )
            )
        elif not accepts_var_kwargs(meta_function):
            errors.append(
                _error(
                    11,
                    'CQRS master meta_function must support **kwargs.',
                    'Define it as def meta(obj, **kwargs).',
                )
            )
    return errors


def _check_replica(config: dict[str, Any]) -> list[Any]:
    errors: list[Any] = []
    queue = config.get('queue')
    if not queue:
        errors.append(
            _error(12, 'CQRS queue is not set.', "Each replica service needs its own CQRS['queue'] name.")
        )
    elif not isinstance(queue, str):
        errors.append(_error(13, 'CQRS queue must be string.', f"CQRS['queue'] is {queue!r}."))
    if 'replica' not in config:
        return errors
    replica = config['replica']
    if not isinstance(replica, dict):
        return [
            *errors,
            _error(14, 'CQRS replica configuration must be dict.', "Set CQRS['replica'] to a dict."),
        ]
    unknown = sorted(set(replica) - REPLICA_KEYS)
    if unknown:
        errors.append(
            _warning(
                11,
                f'Unknown CQRS replica setting(s): {", ".join(unknown)}.',
                f'Known: {", ".join(sorted(REPLICA_KEYS))}.',
            )
        )
    retries = replica.get('CQRS_MAX_RETRIES', DEFAULT_REPLICA_MAX_RETRIES)
    if retries is not None and (not is_int(retries) or retries < 0):
        errors.append(
            _warning(
                2,
                f'Replica setting CQRS_MAX_RETRIES={retries} is invalid, '
                f'using default {DEFAULT_REPLICA_MAX_RETRIES}.',
                'Use a non-negative integer, or None to retry forever.',
            )
        )
    delay = replica.get('CQRS_RETRY_DELAY', DEFAULT_REPLICA_RETRY_DELAY)
    if not is_int(delay) or delay < 0:
        errors.append(
            _warning(
                3,
                f'Replica setting CQRS_RETRY_DELAY={delay} is invalid, '
                f'using default {DEFAULT_REPLICA_RETRY_DELAY}.',
                'Use a non-negative number of seconds.',
            )
        )
    if 'delay_queue_max_size' in replica and 'CQRS_DELAY_QUEUE_MAX_SIZE' in replica:
        errors.append(
            _warning(
                7,
                'Both delay_queue_max_size and CQRS_DELAY_QUEUE_MAX_SIZE are set; '
                'delay_queue_max_size is used.',
                'Keep one of the two spellings.',
            )
        )
    size_keys = [k for k in ('delay_queue_max_size', 'CQRS_DELAY_QUEUE_MAX_SIZE') if k in replica]
    for key in size_keys[:1]:  # the one conf uses
        size = replica[key]
        if size is not None and (not is_int(size) or size <= 0):
            errors.append(
                _warning(
                    4,
                    f'Settings {key}={size} is invalid, '
                    f'using default {DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE}.',
                    'Use a positive integer or None.',
                )
            )
    ttl = replica.get('dead_message_ttl')
    if ttl is not None and (not is_int(ttl) or ttl < 1):
        errors.append(
            _warning(
                5,
                f'Settings dead_message_ttl={ttl} is invalid, using default 864000.',
                'Use seconds, or None.',
            )
        )
    timeout = replica.get('CQRS_QUERY_TIMEOUT', 0)
    try:
        int(timeout or 0)
    except (TypeError, ValueError):
        errors.append(
            _warning(
                6, f'Settings CQRS_QUERY_TIMEOUT={timeout!r} is invalid, using 0 (off).', 'Use milliseconds.'
            )
        )
    return errors


# -- models ---------------------------------------------------------------------------------------
def _names(model: Any) -> set[str]:
    return {f.name for f in model._meta.fields} if hasattr(model, '_meta') else set()


def tracked_fields_errors(model: Any) -> list[Any]:
    tracked = model.CQRS_TRACKED_FIELDS
    name = model.__name__
    if tracked is None:
        return []
    if isinstance(tracked, (list, tuple)):
        if len(set(tracked)) != len(tracked):
            return [
                _error(
                    104,
                    f'Duplicate names in CQRS_TRACKED_FIELDS field for model {name}.',
                    'Remove duplicates.',
                    model,
                )
            ]
        if not set(tracked) <= _names(model):
            return [
                _error(
                    105,
                    f'CQRS_TRACKED_FIELDS field is not correctly set for model {name}.',
                    f'Unknown: {", ".join(sorted(set(tracked) - _names(model)))}.',
                    model,
                )
            ]
        return []
    if tracked != ALL_BASIC_FIELDS:
        return [
            _error(
                106,
                f'Model {name}: Invalid configuration for CQRS_TRACKED_FIELDS',
                "Use '__all__' or a list.",
                model,
            )
        ]
    return []


def _cqrs_id_errors(model: Any, registry: Any) -> list[Any]:
    if not model.CQRS_ID:
        return [
            _error(
                101,
                'CQRS_ID must be set for every model, that uses CQRS.',
                f"Set CQRS_ID = '<unique id>' on {model.__name__}.",
                model,
            )
        ]
    if registry.is_duplicate(model):
        return [
            _error(
                102,
                f"Two models can't have the same CQRS_ID: {model.CQRS_ID}.",
                f'{registry.models[model.CQRS_ID].__qualname__} already uses it.',
                model,
            )
        ]
    return []


def master_model_errors(model: Any) -> list[Any]:
    if model._meta.abstract or model._meta.proxy:
        return []
    errors = _cqrs_id_errors(model, MasterRegistry)
    name = model.__name__
    fields, serializer = model.CQRS_FIELDS, model.CQRS_SERIALIZER
    if fields != ALL_BASIC_FIELDS and serializer is not None:
        errors.append(
            _error(
                103,
                f"Model {name}: CQRS_FIELDS can't be set together with CQRS_SERIALIZER.",
                'Use one of them.',
                model,
            )
        )
    errors += tracked_fields_errors(model)
    if serializer is None and fields != ALL_BASIC_FIELDS:
        if not isinstance(fields, (list, tuple)):
            errors.append(
                _error(
                    109,
                    f'CQRS_FIELDS field is not correctly set for model {name}.',
                    "Use '__all__' or a list.",
                    model,
                )
            )
        elif len(set(fields)) != len(fields):
            errors.append(
                _error(
                    107,
                    f'Duplicate names in CQRS_FIELDS field for model {name}.',
                    'Remove duplicates.',
                    model,
                )
            )
        elif model._meta.pk.name not in fields:
            errors.append(
                _error(
                    108, f'PK is not in CQRS_FIELDS for model {name}.', f'Add {model._meta.pk.name!r}.', model
                )
            )
        elif not set(fields) <= _names(model):
            errors.append(
                _error(
                    109,
                    f'CQRS_FIELDS field is not correctly set for model {name}.',
                    f'Unknown: {", ".join(sorted(set(fields) - _names(model)))}.',
                    model,
                )
            )
    if serializer is not None:
        try:
            import_string(serializer)
        except ImportError as exc:
            errors.append(_error(110, f"Model {model}: CQRS_SERIALIZER can't be imported.", str(exc), model))
    return errors


def replica_model_errors(model: Any) -> list[Any]:
    errors = _cqrs_id_errors(model, ReplicaRegistry)
    mapping = getattr(model, 'CQRS_MAPPING', None)
    name = model.__name__
    if mapping is not None:
        values = list(mapping.values()) if isinstance(mapping, dict) else []
        names = _names(model)
        if not isinstance(mapping, dict):
            errors.append(
                _error(
                    111,
                    f'CQRS_MAPPING must be a dict for model {name}.',
                    'Map master to replica names.',
                    model,
                )
            )
        elif len(set(values)) != len(values):
            errors.append(
                _error(
                    111,
                    f'Duplicate names in CQRS_MAPPING field for model {name}.',
                    'Map each field once.',
                    model,
                )
            )
        elif hasattr(model, '_meta') and model._meta.pk and model._meta.pk.name not in values:
            errors.append(
                _error(112, f'PK is not in CQRS_MAPPING for model {name}.', 'Map the master pk to it.', model)
            )
        elif names and not set(values) <= names:
            errors.append(
                _error(
                    113,
                    f'CQRS_MAPPING field is not correctly set for model {name}.',
                    f'Unknown: {", ".join(sorted(set(values) - names))}.',
                    model,
                )
            )
    return errors


@register(Tags.models)
def check_registered_classes(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Replicas Django does not check itself: abstract models and non-model classes."""
    errors: list[Any] = []
    seen = set()
    candidates = [
        *ReplicaRegistry.models.values(),
        *(model for _, model in ReplicaRegistry.duplicates),
        *ReplicaRegistry.missing_id,
    ]
    for model in candidates:
        concrete = hasattr(model, '_meta') and not model._meta.abstract
        if concrete or model in seen:
            continue
        seen.add(model)
        errors += replica_model_errors(model)
    return errors


def _aliases_missing(databases: Any, table: str) -> list[str]:
    from django.db import connections

    missing = []
    for alias in databases:
        try:
            tables = connections[alias].introspection.table_names()
        except Exception:
            continue  # an unreachable database is reported by Django's own checks
        if table not in tables:
            missing.append(alias)
    return missing


def check_tables(databases: Any) -> list[Any]:
    """The app's own tables exist where replicas write (run by ``cqrs_consume`` before starting;
    not a registered check, or it would stop ``migrate`` from creating them)."""
    if not databases or not ReplicaRegistry.models:
        return []
    from dj_cqrs.models import ReplicaTombstone

    return [
        _error(
            20,
            f"The dj_cqrs tables are missing in database '{alias}'.",
            f'Run `manage.py migrate dj_cqrs --database {alias}`.',
        )
        for alias in _aliases_missing(databases, ReplicaTombstone._meta.db_table)
    ]


@register(Tags.database)
def check_outbox_table(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """Masters with the outbox on need its table (a warning: ``migrate`` runs this check too)."""
    from dj_cqrs.conf import cqrs_settings

    if not databases or not MasterRegistry.models or not cqrs_settings.master.outbox:
        return []
    from dj_cqrs.master.outbox import OutboxEvent

    return [
        _warning(
            21,
            f"The CQRS outbox table is missing in database '{alias}'; events are published "
            'without it (a broker outage loses them).',
            f'Run `manage.py migrate dj_cqrs --database {alias}`.',
        )
        for alias in _aliases_missing(databases, OutboxEvent._meta.db_table)
    ]
