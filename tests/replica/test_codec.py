"""The wire codec ``dj_cqrs.core.codec`` (UPSTREAM_SPEC §5.1, §12 item 1)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from dj_cqrs.core import codec
from dj_cqrs.core.codec import DecodeError
from dj_cqrs.core.events import Message
from dj_cqrs.dataclasses import TransportPayload

UTC = dt.timezone.utc

SPEC_SAVE = (
    b'{"signal_type":"SAVE","cqrs_id":"author","instance_data":{"id":1,"name":"n","publisher":3,'
    b'"cqrs_revision":0,"cqrs_updated":"2024-05-01 10:00:00.123456+00:00"},"previous_data":null,'
    b'"instance_pk":1,"correlation_id":null,"retries":0,"expires":"2024-05-02T10:00:00+00:00","meta":{}}'
)
SPEC_TRACKED = (
    b'{"signal_type":"SAVE","cqrs_id":"tracked_parent","instance_data":{"id":7,"char_field":"New",'
    b'"cqrs_revision":1,"cqrs_updated":"2024-05-01 10:05:00.500000+00:00"},"previous_data":'
    b'{"cqrs_revision":0,"char_field":"Old"},"instance_pk":7,"correlation_id":null,"retries":0,'
    b'"expires":"2024-05-02T10:05:00+00:00","meta":{}}'
)
SPEC_DELETE = (
    b'{"signal_type":"DELETE","cqrs_id":"pk","instance_data":{"id":1,"cqrs_revision":1,'
    b'"cqrs_updated":"2024-05-01 10:06:00.000001+00:00","custom":{"1":"2"}},"previous_data":null,'
    b'"instance_pk":1,"correlation_id":null,"retries":0,"expires":"2024-05-02T10:06:00+00:00","meta":{}}'
)


# -- byte-exact encoding -----------------------------------------------------------------------------
def test_spec_save_example_is_byte_exact():
    message = Message(
        signal_type='SAVE',
        cqrs_id='author',
        instance_data={
            'id': 1,
            'name': 'n',
            'publisher': 3,
            'cqrs_revision': 0,
            'cqrs_updated': str(dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        },
        instance_pk=1,
        expires=dt.datetime(2024, 5, 2, 10, 0, 0, 987654, tzinfo=UTC),  # microseconds are dropped
        meta={},
    )
    assert codec.encode(message) == SPEC_SAVE


def test_spec_tracked_example_is_byte_exact_through_transport_payload():
    payload = TransportPayload(
        'SAVE',
        'tracked_parent',
        {
            'id': 7,
            'char_field': 'New',
            'cqrs_revision': 1,
            'cqrs_updated': '2024-05-01 10:05:00.500000+00:00',
        },
        7,
        previous_data={'cqrs_revision': 0, 'char_field': 'Old'},
        expires=dt.datetime(2024, 5, 2, 10, 5, tzinfo=UTC),
        meta={},
    )
    assert codec.encode_fields(payload.to_dict()) == SPEC_TRACKED
    assert codec.encode(payload.to_message()) == SPEC_TRACKED


def test_spec_delete_example_is_byte_exact():
    fields = {
        'signal_type': 'DELETE',
        'cqrs_id': 'pk',
        'instance_data': {
            'id': 1,
            'cqrs_revision': 1,
            'cqrs_updated': '2024-05-01 10:06:00.000001+00:00',
            'custom': {'1': '2'},
        },
        'previous_data': None,
        'instance_pk': 1,
        'correlation_id': None,
        'retries': 0,
        'expires': '2024-05-02T10:06:00+00:00',
        'meta': {},
    }
    assert codec.encode_fields(fields) == SPEC_DELETE


@pytest.mark.parametrize('body', [SPEC_SAVE, SPEC_TRACKED, SPEC_DELETE])
def test_spec_examples_roundtrip(body):
    message = codec.decode(body)
    assert codec.encode(message) == body
    assert message.to_fields() == json.loads(body)


def test_decoded_spec_example_values():
    message = codec.decode(SPEC_SAVE)
    assert message.signal_type == 'SAVE'
    assert message.cqrs_id == 'author'
    assert message.instance_pk == 1
    assert message.instance_data['cqrs_updated'] == '2024-05-01 10:00:00.123456+00:00'
    assert message.expires == dt.datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    assert message.retries == 0
    assert message.meta == {}
    assert message.previous_data is None
    assert message.has_expires is True


def test_key_order_is_canonical_whatever_the_input_order():
    fields = dict(reversed(list(json.loads(SPEC_SAVE).items())))
    assert codec.encode_fields(fields) == SPEC_SAVE
    keys = list(json.loads(codec.encode_fields(fields)))
    assert keys == list(codec.BODY_KEYS)
    assert 'queue' not in keys


def test_missing_optional_keys_are_written_as_null_and_retries_zero():
    body = codec.encode_fields(
        {'signal_type': 'SYNC', 'cqrs_id': 'x', 'instance_data': {}, 'instance_pk': 'a'}
    )
    assert body == (
        b'{"signal_type":"SYNC","cqrs_id":"x","instance_data":{},"previous_data":null,"instance_pk":"a",'
        b'"correlation_id":null,"retries":0,"expires":null,"meta":null}'
    )


def test_extra_keys_are_not_written():
    fields = {**json.loads(SPEC_SAVE), 'queue': 'replica', 'is_requeue': True}
    assert codec.encode_fields(fields) == SPEC_SAVE


def test_instance_data_key_order_is_preserved():
    data = {'z': 1, 'a': 2, 'm': {'y': 1, 'b': 2}}
    assert codec.dumps(data) == '{"z":1,"a":2,"m":{"y":1,"b":2}}'


# -- escaping --------------------------------------------------------------------------------------
def test_slash_is_escaped_and_decoded_back():
    assert codec.dumps({'url': 'http://a/b'}) == '{"url":"http:\\/\\/a\\/b"}'
    assert codec.loads('{"url":"http:\\/\\/a\\/b"}') == {'url': 'http://a/b'}
    assert codec.loads('{"url":"http://a/b"}') == {'url': 'http://a/b'}


def test_non_ascii_is_escaped():
    assert codec.dumps('é') == '"\\u00e9"'
    assert codec.dumps('日本') == '"\\u65e5\\u672c"'
    assert codec.dumps('😀') == '"\\ud83d\\ude00"'
    body = codec.encode_fields(
        {'signal_type': 'SAVE', 'cqrs_id': 'x', 'instance_data': {'n': 'Zoë 😀'}, 'instance_pk': 1}
    )
    body.decode('ascii')  # pure ASCII
    assert codec.decode(body).instance_data == {'n': 'Zoë 😀'}


def test_control_characters_and_quotes_are_escaped():
    assert codec.dumps('a"b\\c\n\t\x01') == '"a\\"b\\\\c\\n\\t\\u0001"'


def test_decode_accepts_utf8_raw_non_ascii():
    body = '{"signal_type":"SAVE","cqrs_id":"x","instance_data":{"n":"é"},"instance_pk":1}'.encode()
    assert codec.decode(body).instance_data == {'n': 'é'}


def test_decode_accepts_str_body():
    assert codec.decode(SPEC_SAVE.decode()).cqrs_id == 'author'


# -- values --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ('value', 'text'),
    [
        (Decimal('12345678901234567890.1234567891'), '12345678901234567890.1234567891'),
        (Decimal('0.1'), '0.1'),
        (Decimal('1.50'), '1.50'),
        (Decimal('-0.000001'), '-0.000001'),
        (Decimal('1E+3'), '1000'),
        (Decimal('0'), '0'),
    ],
)
def test_decimal_encodes_exactly(value, text):
    assert codec.dumps({'a': value}) == '{"a":' + text + '}'


@pytest.mark.parametrize(
    'text', ['12345678901234567890.1234567891', '0.30000000000000000001', '-98765432109876543210.5']
)
def test_number_that_float_cannot_hold_decodes_to_exact_decimal(text):
    value = codec.loads('{"a":' + text + '}')['a']
    assert isinstance(value, Decimal)
    assert value == Decimal(text)
    assert codec.dumps({'a': value}) == '{"a":' + text + '}'


@pytest.mark.parametrize(('text', 'expected'), [('1.5', 1.5), ('0.1', 0.1), ('1.50', 1.5), ('1e5', 1e5)])
def test_number_that_float_holds_decodes_to_float(text, expected):
    value = codec.loads('{"a":' + text + '}')['a']
    assert isinstance(value, float)
    assert value == expected


def test_big_integers_stay_exact():
    big = 2**70 + 1
    assert codec.dumps({'a': big}) == '{"a":' + str(big) + '}'
    assert codec.loads(codec.dumps({'a': big}))['a'] == big


@pytest.mark.parametrize(
    'value', [Decimal('NaN'), Decimal('Infinity'), Decimal('-Infinity'), float('nan'), float('inf')]
)
def test_non_finite_numbers_are_refused(value):
    with pytest.raises((TypeError, ValueError)):
        codec.dumps({'a': value})


def test_user_string_resembling_a_decimal_marker_is_untouched():
    text = '\x00abc123'
    assert codec.loads(codec.dumps({'a': text, 'd': Decimal('1.1')})) == {'a': text, 'd': 1.1}


def test_json_value_stringifies_scalars():
    pk = uuid.UUID('12345678-1234-5678-1234-567812345678')
    assert codec.json_value(pk) == '12345678-1234-5678-1234-567812345678'
    assert codec.json_value(dt.date(2024, 5, 1)) == '2024-05-01'
    assert codec.json_value(dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)) == '2024-05-01 10:00:00+00:00'
    assert codec.json_value(5) == 5
    assert codec.json_value(None) is None


def test_default_encodes_dates_uuid_and_sets():
    pk = uuid.UUID('12345678-1234-5678-1234-567812345678')
    assert codec.dumps([pk, dt.date(2024, 5, 1), dt.time(10, 30), dt.timedelta(seconds=90)]) == (
        '["12345678-1234-5678-1234-567812345678","2024-05-01","10:30:00","0:01:30"]'
    )
    assert codec.dumps({'s': {1}}) == '{"s":[1]}'


def test_unencodable_value_raises_type_error():
    with pytest.raises(TypeError, match='not JSON serializable'):
        codec.dumps({'a': object()})


# -- expires ---------------------------------------------------------------------------------------
def test_expires_forms():
    base = {'signal_type': 'SAVE', 'cqrs_id': 'x', 'instance_data': {}, 'instance_pk': 1}
    assert codec.decode(json.dumps({**base, 'expires': None})).expires is None
    assert codec.decode(json.dumps({**base, 'expires': None})).has_expires is True
    absent = codec.decode(json.dumps(base))
    assert (absent.expires, absent.has_expires) == (None, False)
    z = codec.decode(json.dumps({**base, 'expires': '2024-05-02T10:00:00Z'})).expires
    assert z == dt.datetime(2024, 5, 2, 10, tzinfo=UTC)
    naive = codec.decode(json.dumps({**base, 'expires': '2024-05-02T10:00:00'})).expires
    assert naive == dt.datetime(2024, 5, 2, 10) and naive.tzinfo is None
    offset = codec.decode(json.dumps({**base, 'expires': '2024-05-02T12:00:00+02:00'})).expires
    assert offset == dt.datetime(2024, 5, 2, 10, tzinfo=UTC)


def test_optional_keys_default_on_decode():
    message = codec.decode(
        b'{"signal_type":"DELETE","cqrs_id":"x","instance_data":{"id":1},"instance_pk":null}'
    )
    assert message.instance_pk is None
    assert (message.previous_data, message.correlation_id, message.retries, message.meta) == (
        None,
        None,
        0,
        None,
    )
    assert (
        codec.decode(
            b'{"signal_type":"SAVE","cqrs_id":"x","instance_data":{},"instance_pk":1,"retries":null}'
        ).retries
        == 0
    )


def test_unknown_keys_are_ignored_on_decode():
    body = SPEC_SAVE[:-1] + b',"queue":"replica","future":{"x":1}}'
    assert codec.encode(codec.decode(body)) == SPEC_SAVE


def test_retries_and_pk_types_survive():
    body = codec.encode_fields(
        {'signal_type': 'SAVE', 'cqrs_id': 'x', 'instance_data': {}, 'instance_pk': 'abc', 'retries': 7}
    )
    message = codec.decode(body)
    assert (message.instance_pk, message.retries) == ('abc', 7)
    assert message.with_retries(8).retries == 8


# -- poison bodies -------------------------------------------------------------------------------------
VALID = json.loads(SPEC_SAVE)


def _without(key):
    return json.dumps({k: v for k, v in VALID.items() if k != key}).encode()


def _with(**changes):
    return json.dumps({**VALID, **changes}).encode()


POISON = {
    'not json': b'not json',
    'empty body': b'',
    'whitespace only': b'   \n',
    'truncated json': SPEC_SAVE[:-5],
    'invalid utf-8': b'\xff\xfe{"a":1}',
    'json array': b'[1, 2, 3]',
    'json string': b'"SAVE"',
    'json number': b'42',
    'json null': b'null',
    'json true': b'true',
    'missing signal_type': _without('signal_type'),
    'missing cqrs_id': _without('cqrs_id'),
    'missing instance_data': _without('instance_data'),
    'missing instance_pk': _without('instance_pk'),
    'unknown signal type': _with(signal_type='UPDATE'),
    'lowercase signal type': _with(signal_type='save'),
    'signal type not a string': _with(signal_type=1),
    'cqrs_id not a string': _with(cqrs_id=5),
    'empty cqrs_id': _with(cqrs_id=''),
    'instance_data list': _with(instance_data=[1, 2]),
    'instance_data string': _with(instance_data='{"id": 1}'),
    'instance_data null': _with(instance_data=None),
    'instance_pk object': _with(instance_pk={'id': 1}),
    'instance_pk list': _with(instance_pk=[1]),
    'previous_data list': _with(previous_data=['a']),
    'previous_data string': _with(previous_data='x'),
    'negative retries': _with(retries=-1),
    'retries string': _with(retries='3'),
    'retries float': _with(retries=1.5),
    'retries bool': _with(retries=True),
    'correlation_id object': _with(correlation_id={'a': 1}),
    'expires garbage': _with(expires='tomorrow'),
    'expires number': _with(expires=1714557600),
    'expires object': _with(expires={'at': 1}),
    'expires bad date': _with(expires='2024-13-45T99:00:00+00:00'),
    'deeply nested': b'{"signal_type":"SAVE","cqrs_id":"x","instance_pk":1,"instance_data":'
    + b'[' * 100000
    + b']' * 100000
    + b'}',
}


@pytest.mark.parametrize('body', list(POISON.values()), ids=list(POISON))
def test_poison_body_raises_decode_error_with_original_bytes(body):
    with pytest.raises(DecodeError) as info:
        codec.decode(body)
    assert isinstance(info.value, ValueError)
    assert info.value.body == body
    assert info.value.reason
    assert str(info.value) == info.value.reason


def test_poison_kinds_count():
    assert len(POISON) >= 20


def test_missing_key_reason_names_the_key():
    for key in codec.REQUIRED_KEYS:
        with pytest.raises(DecodeError, match=key):
            codec.decode(_without(key))


def test_huge_body_is_refused_before_parsing(monkeypatch):
    huge = b'{"a":"' + b'x' * (codec.MAX_BODY_BYTES + 1) + b'"}'
    with pytest.raises(DecodeError, match='exceeds'):
        codec.decode(huge)
    monkeypatch.setattr(codec, 'MAX_BODY_BYTES', 100)
    with pytest.raises(DecodeError, match='exceeds the 100 bytes limit'):
        codec.decode(SPEC_SAVE)


def test_body_at_the_limit_is_accepted(monkeypatch):
    monkeypatch.setattr(codec, 'MAX_BODY_BYTES', len(SPEC_SAVE))
    assert codec.decode(SPEC_SAVE).cqrs_id == 'author'


def test_instance_pk_may_be_null_and_scalars_of_any_kind():
    for pk in (None, 1, 'a', 1.5, True):
        assert codec.decode(_with(instance_pk=pk)).instance_pk == pk


# -- TransportPayload on top of the codec ----------------------------------------------------------
def test_transport_payload_from_wire_and_to_dict():
    payload = TransportPayload.from_wire(codec.decode(SPEC_SAVE), queue='replica')
    assert payload.queue == 'replica'
    assert payload.pk == 1
    assert payload.expires == dt.datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert codec.encode_fields(payload.to_dict()) == SPEC_SAVE


def test_transport_payload_from_message_dict():
    payload = TransportPayload.from_message(json.loads(SPEC_DELETE))
    assert (payload.signal_type, payload.cqrs_id, payload.pk) == ('DELETE', 'pk', 1)
    assert payload.instance_data['custom'] == {'1': '2'}
    assert codec.encode_fields(payload.to_dict()) == SPEC_DELETE


def test_transport_payload_retries_setter_validates():
    payload = TransportPayload('SAVE', 'x', {}, 1)
    payload.retries = 3
    assert payload.retries == 3
    with pytest.raises(ValueError, match=r'Payload retries field should be 0 or positive integer\.'):
        payload.retries = -1


@pytest.mark.parametrize('literal', [b'NaN', b'Infinity', b'-Infinity'])
def test_non_finite_literals_are_poison(literal):
    body = b'{"signal_type":"SAVE","cqrs_id":"x","instance_data":{"a":' + literal + b'},"instance_pk":1}'
    with pytest.raises(DecodeError):
        codec.decode(body)
