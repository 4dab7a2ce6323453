"""The only reader of ``settings.CQRS``.

Values are read when asked for and merged with the upstream defaults, so ``override_settings`` and
in-place edits of the dict in tests both take effect; the resolved transport class is cached until
Django's ``setting_changed`` fires for ``CQRS``. The user's dict is never mutated. Invalid values fall back
to their defaults here; :mod:`dj_cqrs.checks` reports them with ids and hints.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, TypeGuard

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from dj_cqrs.core.routing import DEFAULT_EXCHANGE, default_dead_letter_queue

DEFAULT_MASTER_MESSAGE_TTL = 86400
DEFAULT_MASTER_AUTO_UPDATE_FIELDS = False
DEFAULT_REPLICA_MAX_RETRIES = 30
DEFAULT_REPLICA_RETRY_DELAY = 2
DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE = 1000
DEFAULT_DEAD_MESSAGE_TTL = 864000
DEFAULT_CONSUMER_PREFETCH_COUNT = 10
DEFAULT_OUTBOX_WARN_AGE = 300
DEFAULT_BATCH_SIZE = 100
DEFAULT_RABBITMQ_PREFETCH_COUNT = 100

TOP_LEVEL_KEYS = frozenset(
    {
        'transport',
        'url',
        'host',
        'port',
        'user',
        'password',
        'exchange',
        'queue',
        'consumer_prefetch_count',
        'transport_options',
        'master',
        'replica',
    }
)
MASTER_KEYS = frozenset(
    {
        'CQRS_AUTO_UPDATE_FIELDS',
        'CQRS_MESSAGE_TTL',
        'correlation_function',
        'meta_function',
        'CQRS_OUTBOX',
        'CQRS_OUTBOX_WARN_AGE',
    }
)
REPLICA_KEYS = frozenset(
    {
        'CQRS_MAX_RETRIES',
        'CQRS_RETRY_DELAY',
        'delay_queue_max_size',
        'CQRS_DELAY_QUEUE_MAX_SIZE',
        'dead_letter_queue',
        'dead_message_ttl',
        'CQRS_QUERY_TIMEOUT',
        'CQRS_LOG_TIMED_OUT_QUERIES',
        'CQRS_QUERY_LOGGER',
        'CQRS_BATCH_SIZE',
        'CQRS_BATCH_WAIT',
    }
)

_MISSING = object()


def is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass; upstream accepts True as a valid integer, so do we.
    return isinstance(value, int)


def _int_or_default(value: Any, default: int | None, *, minimum: int, allow_none: bool) -> int | None:
    if value is None:
        return None if allow_none else default
    if not is_int(value) or value < minimum:
        return default
    return int(value)


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 60:
        return float(value)
    return 0.0


def resolve_meta_function(value: Any) -> Any:
    """The meta function named by the setting, or ``None`` if unset or unusable."""
    if not value:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError:
            return None
    if not inspect.isfunction(value) or not accepts_var_kwargs(value):
        return None
    return value


def accepts_var_kwargs(func: Any) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True)
class MasterSettings:
    auto_update_fields: bool
    message_ttl: int | None
    correlation_function: Any
    meta_function: Any
    outbox: bool = True
    outbox_warn_age: int = 300


@dataclass(frozen=True)
class ReplicaSettings:
    max_retries: int | None
    retry_delay: int
    delay_queue_max_size: int | None
    dead_letter_queue: str
    dead_message_ttl: int | None
    query_timeout: int
    log_timed_out_queries: bool
    query_logger: str
    batch_size: int = 100
    batch_wait: float = 0.0


class CQRSSettings:
    """Typed, read-only view of ``settings.CQRS``."""

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(django_settings, 'CQRS', None)
        return value if isinstance(value, dict) else {}

    @property
    def is_configured(self) -> bool:
        return isinstance(getattr(django_settings, 'CQRS', None), dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def transport_path(self) -> Any:
        return self.raw.get('transport')

    @property
    def url(self) -> str | None:
        return self.raw.get('url')

    @property
    def exchange(self) -> str:
        return self.raw.get('exchange') or DEFAULT_EXCHANGE

    @property
    def queue(self) -> str | None:
        queue = self.raw.get('queue')
        return queue if isinstance(queue, str) and queue else None

    @property
    def consumer_prefetch_count(self) -> int | None:
        value = self.raw.get('consumer_prefetch_count')
        if is_int(value) and value > 0:
            return int(value)
        return None

    def _section(self, name: str, *depends: Any) -> tuple[dict[str, Any], Any, Any]:
        """The section dict, its current items and the view last built from equal items.

        Sections are read on every save and every batch; rebuilding a view costs more than the
        save's own SQL, so the last one is reused while the section's items are unchanged (an
        in-place edit or ``override_settings`` builds a new one)."""
        section = self.raw.get(name)
        section = section if isinstance(section, dict) else {}
        items = (*section.items(), *depends)
        cached = self.__dict__.get(f'_cached_{name}')
        if cached is not None and cached[0] == items:
            return section, items, cached[1]
        return section, items, None

    @property
    def master(self) -> MasterSettings:
        section, items, cached = self._section('master')
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        view = self._master(section)
        self.__dict__['_cached_master'] = (items, view)
        return view

    @property
    def replica(self) -> ReplicaSettings:
        section, items, cached = self._section('replica', self.queue)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        view = self._replica(section, self.queue)
        self.__dict__['_cached_replica'] = (items, view)
        return view

    @staticmethod
    def _master(section: dict[str, Any]) -> MasterSettings:
        auto = section.get('CQRS_AUTO_UPDATE_FIELDS', DEFAULT_MASTER_AUTO_UPDATE_FIELDS)
        correlation = section.get('correlation_function') or None
        return MasterSettings(
            auto_update_fields=auto if isinstance(auto, bool) else DEFAULT_MASTER_AUTO_UPDATE_FIELDS,
            message_ttl=_int_or_default(
                section.get('CQRS_MESSAGE_TTL', DEFAULT_MASTER_MESSAGE_TTL),
                DEFAULT_MASTER_MESSAGE_TTL,
                minimum=1,
                allow_none=True,
            ),
            correlation_function=correlation if callable(correlation) else None,
            meta_function=resolve_meta_function(section.get('meta_function')),
            outbox=section.get('CQRS_OUTBOX', True) is not False,
            outbox_warn_age=_int_or_default(  # type: ignore[arg-type]
                section.get('CQRS_OUTBOX_WARN_AGE', DEFAULT_OUTBOX_WARN_AGE),
                DEFAULT_OUTBOX_WARN_AGE,
                minimum=1,
                allow_none=False,
            ),
        )

    @staticmethod
    def _replica(section: dict[str, Any], queue: str | None) -> ReplicaSettings:
        max_size = section.get('delay_queue_max_size', _MISSING)
        if max_size is _MISSING:
            # The upstream docs name it CQRS_DELAY_QUEUE_MAX_SIZE; accept both spellings.
            max_size = section.get('CQRS_DELAY_QUEUE_MAX_SIZE', DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE)
        dlq = section.get('dead_letter_queue')
        # Dead letters expire only when dead_message_ttl is set (upstream: after 10 days by default).
        dead_ttl = section.get('dead_message_ttl')
        try:
            query_timeout = int(section.get('CQRS_QUERY_TIMEOUT', 0) or 0)
        except (TypeError, ValueError):
            query_timeout = 0
        return ReplicaSettings(
            max_retries=_int_or_default(
                section.get('CQRS_MAX_RETRIES', DEFAULT_REPLICA_MAX_RETRIES),
                DEFAULT_REPLICA_MAX_RETRIES,
                minimum=0,
                allow_none=True,
            ),
            retry_delay=_int_or_default(  # type: ignore[arg-type]
                section.get('CQRS_RETRY_DELAY', DEFAULT_REPLICA_RETRY_DELAY),
                DEFAULT_REPLICA_RETRY_DELAY,
                minimum=0,
                allow_none=False,
            ),
            delay_queue_max_size=_int_or_default(
                max_size, DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE, minimum=1, allow_none=True
            ),
            dead_letter_queue=(
                dlq if isinstance(dlq, str) and dlq else default_dead_letter_queue(queue or 'None')
            ),
            dead_message_ttl=_int_or_default(dead_ttl, DEFAULT_DEAD_MESSAGE_TTL, minimum=1, allow_none=True),
            query_timeout=max(query_timeout, 0),
            log_timed_out_queries=bool(section.get('CQRS_LOG_TIMED_OUT_QUERIES', False)),
            query_logger=section.get('CQRS_QUERY_LOGGER') or 'django-cqrs',
            batch_size=_int_or_default(  # type: ignore[arg-type]
                section.get('CQRS_BATCH_SIZE', DEFAULT_BATCH_SIZE),
                DEFAULT_BATCH_SIZE,
                minimum=1,
                allow_none=False,
            ),
            batch_wait=_seconds(section.get('CQRS_BATCH_WAIT', 0.0)),
        )


cqrs_settings = CQRSSettings()
