"""``codec.dumps`` with the kept C encoders (``codec._encode``): the text of ``json.JSONEncoder.encode``
with the codec's settings, after errors, in nested calls and from several threads at once."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pytest

from dj_cqrs.core import codec

VALUES = [
    {'a': 1, 'b': [1.5, None, True, False, 'x/y "q" \\ \u00e9\u2713\n'], 'c': {}},
    {'amount': Decimal('-12345678901234567890.0123456789'), 'n': [Decimal('1E+5'), Decimal('0E-10')]},
    {'when': dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc), 'day': dt.date(2024, 1, 2)},
    {'u': uuid.UUID(int=5), 'span': dt.timedelta(days=-1, seconds=3), 'set': {1}, 'raw': b'b\xff'},
    'a string/with slash',
    12,
    -0.0,
    None,
    [],
    [[[{'deep': [1, 2, {'x': 'y'}]}]]],
]


def _reference(value):
    """What ``codec.dumps`` wrote before it kept its encoders."""
    text = codec._encoder.encode(value)
    if codec._MARK in text:
        text = codec._MARKED.sub(r'\1', text)
    return text.replace('/', '\\/')


def test_the_kept_encoder_is_used_here():
    assert codec._use_c_encoder


@pytest.mark.parametrize('value', VALUES)
def test_same_text_as_the_encoder(value):
    assert codec.dumps(value) == _reference(value)
    assert codec.dumps(value) == _reference(value)  # the kept encoder, a second time


def test_an_error_leaves_nothing_behind():
    inner = {'bad': object()}
    outer = {'list': [inner], 'ok': 1}
    with pytest.raises(TypeError):
        codec.dumps(outer)
    inner['bad'] = 'fixed'
    # Were the containers of the failed call still marked, this would be a "circular reference".
    assert codec.dumps(outer) == _reference(outer)
    outer['nan'] = float('nan')
    with pytest.raises(ValueError, match='Out of range float'):
        codec.dumps(outer)
    del outer['nan']
    assert codec.dumps(outer) == _reference(outer)


def test_circular_values_are_still_refused():
    value: dict = {'a': []}
    value['a'].append(value)
    with pytest.raises(ValueError, match='Circular reference detected'):
        codec.dumps(value)
    assert codec.dumps({'a': [1]}) == '{"a":[1]}'


def test_a_nested_call_has_its_own_encoder():
    class FileLike:
        """Encoded through its ``name`` (as a FieldFile), which itself calls ``codec.dumps``."""

        storage = None

        @property
        def name(self):
            return codec.dumps({'inner': [1, {'x/y': None}]})

    shared = {'k': 1}
    value = {'shared': shared, 'file': FileLike(), 'again': [shared]}
    assert codec.dumps(value) == (
        '{"shared":{"k":1},"file":"{\\"inner\\":[1,{\\"x\\\\\\/y\\":null}]}","again":[{"k":1}]}'
    )
    assert codec.dumps(value) == _reference(value)


def test_threads_at_once():
    expected = [_reference(v) for v in VALUES]
    errors: list[str] = []
    start = threading.Barrier(4)

    def work(offset):
        start.wait()
        for i in range(3000):
            index = (i + offset) % len(VALUES)
            text = codec.dumps(VALUES[index])
            if text != expected[index]:
                errors.append(text)
                return

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
