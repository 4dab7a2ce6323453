"""``cqrs_bulk_dump`` and ``cqrs_bulk_load`` (UPSTREAM_SPEC §8.3, §8.4): the file format (golden
files), round trips, batches, ``--clear``, bad lines, and a 100,000-row run.

``CQRS_REGEN_GOLDEN=1`` rewrites the golden files of this module from the current output.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from dj_cqrs.testing import capture_events
from tests.commands._tools import GOLDEN, REPO, call, manage
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

UPDATED = dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)


def _fix_times(model, **extra):
    model.objects.update(cqrs_updated=UPDATED, **extra)


def _golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if os.environ.get('CQRS_REGEN_GOLDEN') == '1':
        path.write_text(text, encoding='ascii', newline='')
    return path.read_text(encoding='ascii')


@pytest.fixture
def typed_rows():
    publisher = m.Publisher.objects.create(id=7, name='pub')
    m.TypedMaster.objects.create(
        id=uuid.UUID('12345678-1234-5678-1234-567812345678'),
        char='slash/and "quote" \u00e9\u2713',
        integer=-3,
        amount=Decimal('12345678901234567890.0123456789'),
        when=dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc),
        day=dt.date(2024, 5, 1),
        flag=True,
        maybe=None,
        publisher=publisher,
    )
    m.TypedMaster.objects.create(
        id=uuid.UUID('00000000-0000-0000-0000-000000000001'), char='', amount=Decimal('0.5')
    )
    _fix_times(m.TypedMaster, cqrs_revision=2)
    m.TypedReplica.objects.all().delete()


def _dump(cqrs_id, tmp_path, *args):
    path = tmp_path / f'{cqrs_id}.dump'
    result = call('cqrs_bulk_dump', '-c', cqrs_id, '-o', str(path), *args)
    return path, result


# -- dump -------------------------------------------------------------------------------------------
def test_dump_format_matches_the_golden_file(typed_rows, tmp_path):
    path, result = _dump('typed', tmp_path)
    text = path.read_text(encoding='ascii')
    assert text == _golden('typed.dump', text)
    lines = text.split('\n')
    assert lines[0] == 'typed'
    assert not text.endswith('\n')
    record = json.loads(lines[1])
    assert list(record)[:3] == ['cqrs_revision', 'cqrs_updated', 'id']
    assert result.err == 'Done!\n2 instance(s) saved.\n2 instance(s) processed.\n'


def test_dump_of_a_serializer_model_matches_the_golden_file_with_one_query_per_batch(tmp_path):
    publisher = m.Publisher.objects.create(id=1, name='p/1')
    for i in range(5):
        author = m.Author.objects.create(id=i + 1, name=f'a{i}', publisher=publisher if i % 2 else None)
        m.Book.objects.create(title=f'b{i}', author=author)
    _fix_times(m.Author)
    with CaptureQueriesContext(connection) as queries:
        path, _ = _dump('author', tmp_path, '-b', '2')
    text = path.read_text()
    assert text == _golden('author.dump', text)
    books = [q for q in queries if 'testapp_book' in q['sql']]
    assert len(books) == 3  # one prefetch per batch of 2, never one per row


def test_dump_to_stdout_and_no_is_sync_instance_filtering():
    m.FilteredMaster.objects.create(name='hidden one')
    m.FilteredMaster.objects.create(name='shown')
    result = call('cqrs_bulk_dump', '-c', 'filtered', '-o', '-')
    lines = result.out.split('\n')
    assert lines[0] == 'filtered'
    assert [json.loads(line)['name'] for line in lines[1:]] == ['hidden one', 'shown']
    assert not result.out.endswith('\n')


def test_default_output_name_and_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m.BasicMaster.objects.create(name='a')
    call('cqrs_bulk_dump', '--cqrs-id', 'basic')
    assert (tmp_path / 'basic.dump').read_text().startswith('basic\n{')
    result = manage('cqrs_bulk_dump', '-c', 'basic')
    assert result.code == 1
    assert 'CommandError: File basic.dump exists! Pass --force' in result.err
    m.BasicMaster.objects.create(name='b')
    call('cqrs_bulk_dump', '-c', 'basic', '--force')
    assert len((tmp_path / 'basic.dump').read_text().split('\n')) == 3


def test_interrupted_dump_leaves_no_partial_file(tmp_path):
    m.BasicMaster.objects.create(name='a')
    path = tmp_path / 'basic.dump'
    path.write_text('old')
    with (
        mock.patch('dj_cqrs.ops.dump.codec.dumps', side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        call('cqrs_bulk_dump', '-c', 'basic', '-o', str(path), '-f')
    assert path.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['basic.dump']


def test_record_failure_is_reported_and_the_rest_dumped(tmp_path):
    rows = [m.BasicMaster.objects.create(name=f'n{i}') for i in range(3)]
    real = m.BasicMaster.to_cqrs_dict

    def broken(self, *args, **kwargs):
        if self.pk == rows[1].pk:
            raise ValueError('cannot serialize')
        return real(self, *args, **kwargs)

    path = tmp_path / 'out.dump'
    with mock.patch.object(m.BasicMaster, 'to_cqrs_dict', broken):
        result = manage('cqrs_bulk_dump', '-c', 'basic', '-o', str(path))
    assert result.code == 1
    assert f'\nDump record failed for pk={rows[1].pk}: ValueError: cannot serialize\n' in result.err
    assert 'Done!\n2 instance(s) saved.\n3 instance(s) processed.\n' in result.err
    assert 'CommandError: 1 of 3 record(s) could not be serialized' in result.err
    assert [json.loads(x)['id'] for x in path.read_text().split('\n')[1:]] == [rows[0].pk, rows[2].pk]


def test_dump_progress_goes_to_stderr(tmp_path):
    m.BasicMaster.objects.create(name='a')
    result = call('cqrs_bulk_dump', '-c', 'basic', '-o', '-', '-p')
    assert result.out.startswith('basic\n{')
    err = result.err.splitlines()
    assert err[0] == 'Processing 1 records with batch size 10000'
    assert err[1].startswith('1 of 1 processed - 100% with rate ')


# -- load -------------------------------------------------------------------------------------------
def test_golden_dump_loads_with_exact_values(typed_rows):
    result = call('cqrs_bulk_load', '-i', str(GOLDEN / 'typed.dump'))
    assert result.err == 'Done!\n2 instance(s) loaded.\n'
    row = m.TypedReplica.objects.get(pk=uuid.UUID('12345678-1234-5678-1234-567812345678'))
    assert row.amount == Decimal('12345678901234567890.0123456789')
    assert (row.char, row.integer, row.flag, row.maybe, row.publisher) == (
        'slash/and "quote" \u00e9\u2713',
        -3,
        True,
        None,
        7,
    )
    assert row.day == dt.date(2024, 5, 1)
    assert (row.cqrs_revision, row.cqrs_updated) == (2, UPDATED)


def test_round_trip_in_batches(tmp_path):
    rows = [m.BasicMaster.objects.create(name=f'n{i}', counter=i) for i in range(7)]
    path, _ = _dump('basic', tmp_path, '-b', '3')
    m.BasicReplica.objects.all().delete()
    result = call('cqrs_bulk_load', '--input', str(path), '--batch', '3')
    assert result.err == 'Done!\n7 instance(s) loaded.\n'
    assert sorted(m.BasicReplica.objects.values_list('pk', 'name', 'counter')) == [
        (r.pk, r.name, r.counter) for r in rows
    ]


def test_load_from_stdin():
    m.BasicMaster.objects.create(name='a')
    dump = call('cqrs_bulk_dump', '-c', 'basic', '-o', '-').out
    m.BasicReplica.objects.all().delete()
    result = call('cqrs_bulk_load', '-i', '-', stdin=dump)
    assert result.err == 'Done!\n1 instance(s) loaded.\n'
    assert m.BasicReplica.objects.count() == 1


def test_existing_and_older_revisions_count_as_loaded_but_are_not_applied(tmp_path):
    obj = m.BasicMaster.objects.create(name='old')
    path, _ = _dump('basic', tmp_path)
    obj.name = 'new'
    obj.save()
    assert m.BasicReplica.objects.get(pk=obj.pk).cqrs_revision == 1
    result = call('cqrs_bulk_load', '-i', str(path))
    assert result.err == 'Done!\n1 instance(s) loaded.\n'
    assert m.BasicReplica.objects.get(pk=obj.pk).name == 'new'


def test_replica_with_its_own_hooks(tmp_path):
    publisher = m.Publisher.objects.create(name='p')
    author = m.Author.objects.create(name='a', publisher=publisher)
    m.Book.objects.create(title='t', author=author)
    path, _ = _dump('author', tmp_path)
    m.AuthorReplica.objects.all().delete()
    call('cqrs_bulk_load', '-i', str(path))
    assert m.AuthorReplica.objects.get(pk=author.pk).books == ['t']


@pytest.mark.parametrize(
    ('flag', 'clears'),
    [
        (['-c'], True),
        (['--clear'], True),
        (['--clear=True'], True),
        (['--clear=yes'], True),
        (['-c', '1'], True),
        (['--clear=False'], False),
        (['--clear=0'], False),
        (['-c', 'no'], False),
        ([], False),
    ],
)
def test_clear_flag(tmp_path, flag, clears):
    keep = m.BasicMaster.objects.create(name='in dump')
    path, _ = _dump('basic', tmp_path)
    m.BasicReplica.objects.create(
        id=999, name='only on the replica', counter=0, cqrs_revision=0, cqrs_updated=UPDATED
    )
    result = call('cqrs_bulk_load', '-i', str(path), *flag)
    assert result.err == 'Done!\n1 instance(s) loaded.\n'
    assert m.BasicReplica.objects.filter(pk=keep.pk).exists()
    assert m.BasicReplica.objects.filter(pk=999).exists() is not clears


def test_clear_flag_rejects_other_values(tmp_path):
    result = manage('cqrs_bulk_load', '-i', 'x.dump', '--clear=maybe')
    assert result.code == 2
    assert 'argument --clear/-c: expects no value, or one of true/false' in result.err


def _write(tmp_path, text, name='in.dump'):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8', newline='')
    return path


def _record(pk, name='x', revision=0):
    return json.dumps(
        {'id': pk, 'name': name, 'counter': 0, 'cqrs_revision': revision, 'cqrs_updated': str(UPDATED)}
    )


def test_bad_lines_are_reported_and_the_good_ones_loaded(tmp_path):
    text = '\n'.join(
        [
            'basic',
            _record(1),
            '{"id": 2, "name"',  # line 3: unparseable
            '',  # line 4: blank
            json.dumps({'id': 5, 'cqrs_revision': 0, 'cqrs_updated': str(UPDATED)}),  # line 5: not saved
            _record(6, name='x' * 200),  # line 6: too long for the column: a database error
            '[1, 2]',  # line 7: not an object
            _record(8),
        ]
    )
    result = manage('cqrs_bulk_load', '-i', str(_write(tmp_path, text)), '-b', '100')
    assert result.code == 1
    err = result.err.splitlines()
    assert "Dump file can't be parsed: line 3!" in err
    assert "Dump file can't be parsed: line 4!" in err
    assert "Instance can't be saved: line 5!" in err
    assert any(line.startswith('Unexpected error: line 6! DataError: ') for line in err)
    assert "Dump file can't be parsed: line 7!" in err
    assert 'Done!' in err and '2 instance(s) loaded.' in err
    assert (
        'CommandError: 5 of 7 line(s) of ' in result.err
        and '(3 unparseable, 1 not saved, 1 with errors; first: line 3); the other 2 line(s) were loaded.'
        in result.err
    )
    assert sorted(m.BasicReplica.objects.values_list('pk', flat=True)) == [1, 8]


def test_one_database_error_does_not_poison_its_batch(tmp_path):
    lines = ['basic'] + [_record(i, name='x' * 200 if i == 3 else f'n{i}') for i in range(1, 7)]
    result = manage('cqrs_bulk_load', '-i', str(_write(tmp_path, '\n'.join(lines))), '-b', '3')
    assert result.code == 1
    assert '5 instance(s) loaded.' in result.err.splitlines()
    assert 'Unexpected error: line 4! DataError: value too long' in result.err
    assert sorted(m.BasicReplica.objects.values_list('pk', flat=True)) == [1, 2, 4, 5, 6]


def test_truncated_file(tmp_path):
    text = '\n'.join(['basic', _record(1), _record(2)])[:-10]
    result = manage('cqrs_bulk_load', '-i', str(_write(tmp_path, text)))
    assert result.code == 1
    assert "Dump file can't be parsed: line 3!" in result.err
    assert 'the file looks truncated; dump it again with cqrs_bulk_dump' in result.err
    assert list(m.BasicReplica.objects.values_list('pk', flat=True)) == [1]


def test_clear_with_a_bad_line_changes_nothing(tmp_path):
    m.BasicReplica.objects.create(id=50, name='kept', counter=0, cqrs_revision=0, cqrs_updated=UPDATED)
    text = '\n'.join(['basic', _record(1), '{broken'])
    result = manage('cqrs_bulk_load', '-i', str(_write(tmp_path, text)), '--clear')
    assert result.code == 1
    assert 'so nothing was cleared or loaded: --clear loads every line or none.' in result.err
    assert list(m.BasicReplica.objects.values_list('pk', flat=True)) == [50]


def test_clear_failure(tmp_path):
    path = _write(tmp_path, 'basic\n' + _record(1))
    with mock.patch('django.db.models.query.QuerySet.delete', side_effect=DatabaseError('locked')):
        result = manage('cqrs_bulk_load', '-i', str(path), '-c')
    assert result.code == 1
    assert 'CommandError: Delete operation fails! locked' in result.err


def test_load_publishes_nothing(tmp_path):
    m.BasicMaster.objects.create(name='a')
    path, _ = _dump('basic', tmp_path)
    m.BasicReplica.objects.all().delete()
    with capture_events() as events:
        call('cqrs_bulk_load', '-i', str(path))
    assert events == []


# -- 100,000 rows -----------------------------------------------------------------------------------
ROWS = 100_000
RATES = REPO / '.artifacts' / 'commands' / 'rates.json'


def test_100k_rows_dump_load_and_diff(tmp_path):
    m.BasicMaster.objects.bulk_create(
        (m.BasicMaster(name=f'n{i}', counter=i) for i in range(ROWS)), batch_size=10000
    )
    path = tmp_path / 'basic.dump'
    rates = {}

    start = time.monotonic()
    call('cqrs_bulk_dump', '-c', 'basic', '-o', str(path))
    rates['dump'] = ROWS / (time.monotonic() - start)
    assert path.read_text().count('\n') == ROWS

    start = time.monotonic()
    result = call('cqrs_bulk_load', '-i', str(path))
    rates['load'] = ROWS / (time.monotonic() - start)
    assert result.err == f'Done!\n{ROWS} instance(s) loaded.\n'

    pks = list(m.BasicMaster.objects.order_by('pk').values_list('pk', flat=True))
    stale = [pks[0], pks[ROWS // 2], pks[-1]]
    m.BasicReplica.objects.filter(pk__in=stale).update(cqrs_revision=-1)
    start = time.monotonic()
    master = call('cqrs_diff_master', '-cid', 'basic').out
    replica = call('cqrs_diff_replica', stdin=master).out
    rates['diff'] = ROWS / (time.monotonic() - start)
    assert replica.splitlines()[1:] == [f'[{pk}]' for pk in stale]

    RATES.parent.mkdir(parents=True, exist_ok=True)
    RATES.write_text(json.dumps({k: round(v) for k, v in rates.items()}, indent=1))
    print(f'\nrows/s over {ROWS} rows: ' + ', '.join(f'{k} {v:,.0f}' for k, v in rates.items()))


def test_golden_files_are_ascii_without_trailing_newline():
    for path in Path(GOLDEN).glob('*.dump'):
        data = path.read_bytes()
        assert data.isascii() and not data.endswith(b'\n'), path
