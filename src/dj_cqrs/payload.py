"""``TransportPayload``: the upstream-compatible event object handed to ``produce`` and ``consume``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.core import codec
from dj_cqrs.core.events import Message


def get_correlation_id(signal_type: Any, cqrs_id: Any, instance_pk: Any, queue: Any) -> Any:
    """The id from ``CQRS['master']['correlation_function']``, or ``None``."""
    function = cqrs_settings.master.correlation_function
    if function is None:
        return None
    return function(signal_type, cqrs_id, instance_pk, queue)


def get_message_expiration_dt(message_ttl: int | None = None) -> dt.datetime | None:
    ttl = message_ttl or cqrs_settings.master.message_ttl
    if ttl is None:
        return None
    return timezone.now() + dt.timedelta(seconds=ttl)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # A naive ``expires`` (a master with USE_TZ=False) is read in the current time zone instead of
    # failing the comparison with an aware "now" (upstream crashes the worker there).
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    return value


class TransportPayload:
    """One event: what the master publishes and what the replica receives (UPSTREAM_SPEC §2.12)."""

    def __init__(
        self,
        signal_type: str,
        cqrs_id: str,
        instance_data: Any,
        instance_pk: Any,
        queue: str | None = None,
        previous_data: Any = None,
        correlation_id: Any = None,
        expires: dt.datetime | None = None,
        retries: int = 0,
        meta: Any = None,
    ) -> None:
        self.__signal_type = signal_type
        self.__cqrs_id = cqrs_id
        self.__instance_data = instance_data
        self.__instance_pk = instance_pk
        self.__queue = queue
        self.__previous_data = previous_data
        self.__correlation_id = correlation_id or get_correlation_id(signal_type, cqrs_id, instance_pk, queue)
        self.__expires = expires
        self.__meta = meta
        self.retries = retries

    @classmethod
    def from_message(cls, dct: dict[str, Any]) -> TransportPayload:
        """Build a payload from a decoded body dict (missing ``expires`` → now + TTL)."""
        if 'expires' in dct:
            expires = dct['expires']
            if isinstance(expires, str):
                expires = codec.decode_expires(expires)
        else:
            expires = get_message_expiration_dt()
        return cls(
            dct['signal_type'],
            dct['cqrs_id'],
            dct['instance_data'],
            dct.get('instance_pk'),
            previous_data=dct.get('previous_data'),
            correlation_id=dct.get('correlation_id'),
            expires=_aware(expires),
            retries=dct.get('retries') or 0,
            meta=dct.get('meta'),
        )

    @classmethod
    def from_wire(cls, message: Message, queue: str | None = None) -> TransportPayload:
        """Build a payload from a message decoded by the codec."""
        expires = message.expires if message.has_expires else get_message_expiration_dt()
        return cls(
            message.signal_type,
            message.cqrs_id,
            message.instance_data,
            message.instance_pk,
            queue=queue,
            previous_data=message.previous_data,
            correlation_id=message.correlation_id,
            expires=_aware(expires),
            retries=message.retries,
            meta=message.meta,
        )

    def to_message(self) -> Message:
        return Message(
            signal_type=self.signal_type,
            cqrs_id=self.cqrs_id,
            instance_data=self.instance_data,
            instance_pk=codec.json_value(self.pk),
            previous_data=self.previous_data,
            correlation_id=codec.json_value(self.correlation_id),
            retries=self.retries,
            expires=self.expires,
            meta=self.meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire dict (UPSTREAM_SPEC §5.1); ``queue`` is not part of it."""
        return self.to_message().to_fields()

    def is_expired(self) -> bool:
        return self.__expires is not None and self.__expires <= timezone.now()

    @property
    def signal_type(self) -> str:
        return self.__signal_type

    @property
    def cqrs_id(self) -> str:
        return self.__cqrs_id

    @property
    def instance_data(self) -> Any:
        return self.__instance_data

    @property
    def pk(self) -> Any:
        return self.__instance_pk

    @property
    def queue(self) -> str | None:
        return self.__queue

    @property
    def previous_data(self) -> Any:
        return self.__previous_data

    @property
    def correlation_id(self) -> Any:
        return self.__correlation_id

    @property
    def expires(self) -> dt.datetime | None:
        return self.__expires

    @property
    def meta(self) -> Any:
        return self.__meta

    @property
    def retries(self) -> int:
        return self.__retries

    @retries.setter
    def retries(self, value: int) -> None:
        if not isinstance(value, int) or value < 0:
            raise ValueError('Payload retries field should be 0 or positive integer.')
        self.__retries = value

    def describe(self) -> str:
        return f'pk = {self.pk} ({self.cqrs_id})'

    def log_fields(self) -> dict[str, Any]:
        """Structured fields for ``logging``'s ``extra``: every lifecycle line carries them."""
        return {
            'cqrs_id': self.cqrs_id,
            'pk': self.pk,
            'revision': self.revision,
            'correlation_id': self.correlation_id,
            'signal_type': self.signal_type,
        }

    def __repr__(self) -> str:
        return f'<TransportPayload {self.signal_type} {self.describe()} revision={self.revision}>'

    @property
    def revision(self) -> Any:
        data = self.instance_data
        return data.get('cqrs_revision') if isinstance(data, dict) else None
