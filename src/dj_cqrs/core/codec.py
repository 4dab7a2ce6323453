"""The wire codec: the one place that knows how a CQRS message body looks (UPSTREAM_SPEC §5.1).

Bodies are compact JSON objects whose keys come in the upstream order. Non-ASCII characters are
escaped and ``/`` is written as ``\\/``, as upstream's encoder does, so bodies are byte-identical
for the same values. Decimals are written as JSON numbers with all their digits (upstream turns them
into floats); on decoding, a number that a float cannot hold exactly becomes a ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
import json
import json.encoder
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dj_cqrs.core.events import SIGNAL_TYPES, Message

BODY_KEYS = (
    'signal_type',
    'cqrs_id',
    'instance_data',
    'previous_data',
    'instance_pk',
    'correlation_id',
    'retries',
    'expires',
    'meta',
)
REQUIRED_KEYS = ('signal_type', 'cqrs_id', 'instance_data', 'instance_pk')

#: Bodies larger than this are refused by :func:`decode` (a poison message, not a replica event).
MAX_BODY_BYTES = 16 * 1024 * 1024


class DecodeError(ValueError):
    """A body that is not a valid CQRS message. ``body`` keeps the original bytes."""

    def __init__(self, reason: str, body: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body


# json can't be told how to write a Decimal exactly. ``default`` turns each one into a string
# marked with a per-process nonce, and the marked strings are unquoted afterwards. Using the C
# encoder this way keeps encoding fast; a user string can't carry the nonce by accident.
_NONCE = '\x00' + uuid.uuid4().hex[:12]
_MARK = json.dumps(_NONCE)[1:-1]
_MARKED = re.compile('"' + re.escape(_MARK) + r'([-+0-9.eE]+)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f'Decimal {value} cannot be encoded as JSON')
        return _NONCE + format(value, 'f')
    if isinstance(value, (dt.date, dt.datetime, dt.time, uuid.UUID, dt.timedelta)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if hasattr(value, 'name') and hasattr(value, 'storage'):  # Django FieldFile
        return value.name
    raise TypeError(f'Object of type {type(value).__name__} is not JSON serializable')


_encoder = json.JSONEncoder(separators=(',', ':'), ensure_ascii=True, default=_default, allow_nan=False)


# ``_encoder.encode()`` builds a new C encoder (``c_make_encoder``) on every call, which is most of
# the time of encoding a small body. The same C encoder built with ``_encoder``'s settings writes the
# same text, and can be kept: ``_encode`` takes one from a pool (each call has its own, so threads
# and a nested call never share one) and puts it back. Where there is no C encoder, or it would not
# give the same text (checked at import), ``_encoder.encode()`` is used.
def _new_c_encoder() -> tuple[Any, dict[int, Any]] | None:
    make = getattr(json.encoder, 'c_make_encoder', None)
    if make is None or _encoder.indent is not None:
        return None
    markers: dict[int, Any] = {}
    try:
        iterencode = make(
            markers if _encoder.check_circular else None,
            _encoder.default,
            json.encoder.encode_basestring_ascii if _encoder.ensure_ascii else json.encoder.encode_basestring,
            _encoder.indent,
            _encoder.key_separator,
            _encoder.item_separator,
            _encoder.sort_keys,
            _encoder.skipkeys,
            _encoder.allow_nan,
        )
    except Exception:
        return None
    return iterencode, markers


_c_encoders: list[tuple[Any, dict[int, Any]]] = []
_use_c_encoder = True


def _encode(value: Any) -> str:
    """``_encoder.encode(value)``."""
    if not _use_c_encoder:
        return _encoder.encode(value)
    try:
        encoder = _c_encoders.pop()
    except IndexError:
        made = _new_c_encoder()
        if made is None:
            return _encoder.encode(value)
        encoder = made
    try:
        text = ''.join(encoder[0](value, 0))
    except BaseException:
        encoder[1].clear()  # an error leaves the containers being encoded marked
        raise
    finally:
        _c_encoders.append(encoder)
    return text


def _c_encoder_agrees() -> bool:
    samples = [
        {
            'a/b': [1, -2.5, 1e300, None, True, False, 'x\u00e9\u2713"\\\n/', {}, []],
            'n': {'d': Decimal('12345678901234567890.0123456789'), 'u': uuid.UUID(int=7)},
            '\u00e9': dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc),
        },
        's/\u2713',
        None,
    ]
    try:
        return all(_encode(sample) == _encoder.encode(sample) for sample in samples)
    except Exception:
        return False


_use_c_encoder = _c_encoder_agrees()


def json_value(value: Any) -> Any:
    """What the wire carries for a scalar: date, datetime, time, duration and UUID become ``str``."""
    if isinstance(value, (dt.date, dt.datetime, dt.time, uuid.UUID, dt.timedelta)):
        return str(value)
    return value


def dumps(value: Any) -> str:
    """Compact JSON as upstream writes it (ASCII only, ``/`` escaped), Decimals exact."""
    text = _encode(value)
    if _MARK in text:
        text = _MARKED.sub(r'\1', text)
    return text.replace('/', '\\/')


def _parse_float(text: str) -> float | Decimal:
    number = float(text)
    if repr(number) == text:
        return number
    exact = Decimal(text)
    # Keep a float when it holds the value exactly (``1.50``, ``1e5``); otherwise the Decimal.
    return number if Decimal(repr(number)) == exact else exact


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON')


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=_parse_float, parse_constant=_refuse_constant)


def encode_fields(fields: Mapping[str, Any]) -> bytes:
    """Encode a body from a mapping holding the body keys (missing optional keys become null)."""
    ordered = {key: fields.get(key, 0 if key == 'retries' else None) for key in BODY_KEYS}
    return dumps(ordered).encode('ascii')


def encode(message: Message) -> bytes:
    return encode_fields(message.to_fields())


def decode_expires(value: str) -> dt.datetime:
    """Parse an ``expires`` value (ISO-8601; a trailing ``Z`` is accepted)."""
    text = value.strip()
    if text.endswith('Z'):
        text = text[:-1] + '+00:00'
    return dt.datetime.fromisoformat(text)


def decode(body: bytes | str) -> Message:
    """Parse and validate a body. Raises :class:`DecodeError` with the reason and the bytes."""
    raw = body.encode('utf-8', 'surrogateescape') if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_BODY_BYTES:
        raise DecodeError(f'body of {len(raw)} bytes exceeds the {MAX_BODY_BYTES} bytes limit', raw)
    try:
        data = loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f'body is not JSON: {exc}', raw) from exc
    if not isinstance(data, dict):
        raise DecodeError(f'body is a JSON {type(data).__name__}, not an object', raw)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise DecodeError(f'{key} is missing', raw)
    signal_type, cqrs_id, instance_data = data['signal_type'], data['cqrs_id'], data['instance_data']
    if not isinstance(signal_type, str) or signal_type not in SIGNAL_TYPES:
        raise DecodeError(f'unknown signal_type {signal_type!r}', raw)
    if not isinstance(cqrs_id, str) or not cqrs_id:
        raise DecodeError(f'cqrs_id must be a non-empty string, not {cqrs_id!r}', raw)
    if not isinstance(instance_data, dict):
        raise DecodeError(f'instance_data must be an object, not {type(instance_data).__name__}', raw)
    instance_pk = data['instance_pk']
    if isinstance(instance_pk, (dict, list)):
        raise DecodeError('instance_pk must be a scalar', raw)
    previous_data = data.get('previous_data')
    if previous_data is not None and not isinstance(previous_data, dict):
        raise DecodeError('previous_data must be an object or null', raw)
    retries = data.get('retries') or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise DecodeError(f'retries must be a non-negative integer, not {retries!r}', raw)
    correlation_id = data.get('correlation_id')
    if isinstance(correlation_id, (dict, list)):
        raise DecodeError('correlation_id must be a scalar', raw)
    expires: dt.datetime | None = None
    has_expires = 'expires' in data
    if has_expires and data['expires'] is not None:
        if not isinstance(data['expires'], str):
            raise DecodeError(f'expires must be an ISO-8601 string, not {data["expires"]!r}', raw)
        try:
            expires = decode_expires(data['expires'])
        except ValueError as exc:
            raise DecodeError(f'expires is not an ISO-8601 datetime: {data["expires"]!r}', raw) from exc
    return Message(
        signal_type=signal_type,
        cqrs_id=cqrs_id,
        instance_data=instance_data,
        previous_data=previous_data,
        instance_pk=instance_pk,
        correlation_id=correlation_id,
        retries=retries,
        expires=expires,
        meta=data.get('meta'),
        has_expires=has_expires,
    )
