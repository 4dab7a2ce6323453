"""Transports (upstream ``dj_cqrs.transport``).

``current_transport`` is the transport class named by ``settings.CQRS['transport']`` (``None`` if
unset or not importable). It is resolved on first use and again after ``settings.CQRS`` changes.
"""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.transport.base import BaseTransport
from dj_cqrs.transport.rabbit_mq import RabbitMQTransport

_UNSET = object()
_cache: dict[str, Any] = {}


def get_transport() -> Any:
    """The configured transport class, or ``None``."""
    path = cqrs_settings.transport_path
    cached = _cache.get('transport', _UNSET)
    if cached is not _UNSET and _cache.get('path') == path:
        return cached
    transport: Any = None
    if isinstance(path, str) and path:
        try:
            transport = import_string(path)
        except ImportError:
            transport = None
    elif isinstance(path, type):
        transport = path
    _cache['path'] = path
    _cache['transport'] = transport
    return transport


def reset_transport_cache() -> None:
    _cache.clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == 'CQRS':
        from dj_cqrs.transport.bridge import BrokerTransport

        reset_transport_cache()
        BrokerTransport.reset_all()


def __getattr__(name: str) -> Any:
    if name == 'current_transport':
        return get_transport()
    if name == 'KombuTransport':
        from dj_cqrs.transport.kombu import KombuTransport

        return KombuTransport
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['BaseTransport', 'KombuTransport', 'RabbitMQTransport', 'current_transport', 'get_transport']
