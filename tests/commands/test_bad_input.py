"""Bad input to the tool commands: each gets ``CommandError: <what is wrong and how to fix it>``
and a non-zero exit status, as ``manage.py`` reports them."""

from __future__ import annotations

import io
import json
from unittest import mock

import pytest

from tests.commands._tools import manage
from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True)

RECORD = json.dumps(
    {'id': 1, 'name': 'a', 'counter': 0, 'cqrs_revision': 0, 'cqrs_updated': '2024-05-01 10:00:00+00:00'}
)


def _fails(result, *fragments, code=1):
    assert result.code == code, result
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


# -- unknown CQRS_ID ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'argv',
    [
        ['cqrs_sync', '-cid', 'nope', '-f', '{}'],
        ['cqrs_bulk_dump', '-c', 'nope'],
        ['cqrs_diff_master', '-cid', 'nope'],
    ],
)
def test_unknown_master_id(argv):
    _fails(manage(*argv), 'CommandError: Wrong CQRS ID: nope! Master CQRS IDs of this service: ', 'basic, ')


def test_unknown_replica_id():
    _fails(
        manage('cqrs_deleted_diff_replica', '-cid', 'nope'),
        'CommandError: Wrong CQRS ID: nope! Replica CQRS IDs of this service: ',
    )


@pytest.mark.parametrize(
    ('command', 'side'),
    [
        ('cqrs_diff_replica', 'Replica'),
        ('cqrs_diff_sync', 'Master'),
        ('cqrs_deleted_diff_master', 'Master'),
        ('cqrs_deleted_sync_replica', 'Replica'),
    ],
)
def test_unknown_id_in_a_stream(command, side):
    _fails(
        manage(command, stdin='nope,2024-05-01 10:00:00+00:00,q\n[1]\n'),
        f'Wrong CQRS ID: nope! {side} CQRS IDs',
    )


def test_unknown_id_for_reconcile():
    _fails(
        manage('cqrs_reconcile', '-cid', 'nope'), 'Wrong CQRS ID: nope! It is neither a master nor a replica'
    )


# -- --filter -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('command', ['cqrs_sync', 'cqrs_diff_master', 'cqrs_deleted_diff_replica'])
@pytest.mark.parametrize(
    ('value', 'message'),
    [
        ('{"id": 1', 'CommandError: Bad filter kwargs! Expecting'),
        ('[1, 2]', 'CommandError: Bad filter kwargs! A JSON object is expected, not list'),
        (
            '{"nope": 1}',
            "CommandError: Bad filter kwargs! Cannot resolve keyword 'nope' into field. Choices are: ",
        ),
        ('{"id": "abc"}', "CommandError: Bad filter kwargs! Field 'id' expected a number but got 'abc'."),
    ],
)
def test_bad_filter(command, value, message):
    _fails(manage(command, '-cid', 'basic', '-f', value), message)


def test_bad_filter_names_the_fix():
    _fails(manage('cqrs_sync', '-cid', 'basic', '-f', 'id=1'), '--filter=\'{"id__in": [1, 2]}\'')


# -- batch size ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value', ['0', '-5', 'ten'])
def test_batch_must_be_positive(value):
    _fails(
        manage('cqrs_diff_master', '-cid', 'basic', '-b', value),
        f"argument --batch/-b: must be a positive integer, not '{value}'",
        code=2,
    )


# -- dump files ----------------------------------------------------------------------------------------
def test_missing_dump_file(tmp_path):
    _fails(
        manage('cqrs_bulk_load', '-i', str(tmp_path / 'no.dump')),
        f"CommandError: File {tmp_path / 'no.dump'} doesn't exist!",
    )


@pytest.mark.parametrize('text', ['', '\n', '   \n' + RECORD])
def test_empty_dump_file(tmp_path, text):
    path = tmp_path / 'empty.dump'
    path.write_text(text)
    _fails(
        manage('cqrs_bulk_load', '-i', str(path)),
        f'CommandError: File {path} is empty! Line 1 must be the CQRS_ID',
    )


def test_empty_stdin_for_load():
    _fails(manage('cqrs_bulk_load', '-i', '-', stdin=''), 'CommandError: File - is empty!')


def test_dump_for_an_id_this_replica_does_not_have(tmp_path):
    path = tmp_path / 'other.dump'
    path.write_text('orders\n' + RECORD)
    _fails(
        manage('cqrs_bulk_load', '-i', str(path)),
        'CommandError: Wrong CQRS ID: orders! Replica CQRS IDs of this service: ',
        'author, basic, code, ',
        ', typed.',
    )


def test_dump_without_its_header_line(tmp_path):
    path = tmp_path / 'headless.dump'
    path.write_text(RECORD + '\n' + RECORD)
    _fails(
        manage('cqrs_bulk_load', '-i', str(path)),
        'Line 1 of a dump file must be the CQRS_ID, as cqrs_bulk_dump writes it.',
    )


def test_truncated_dump(tmp_path):
    path = tmp_path / 'cut.dump'
    path.write_text('basic\n' + RECORD + '\n' + RECORD[:20])
    result = manage('cqrs_bulk_load', '-i', str(path))
    _fails(
        result,
        "Dump file can't be parsed: line 3!",
        'the file looks truncated; dump it again with cqrs_bulk_dump',
    )
    assert '1 instance(s) loaded.' in result.err


def test_load_needs_the_dj_cqrs_tables(tmp_path):
    path = tmp_path / 'basic.dump'
    path.write_text('basic\n' + RECORD)
    problem = mock.Mock(
        msg="The dj_cqrs tables are missing in database 'default'.",
        hint='Run `manage.py migrate dj_cqrs --database default`.',
    )
    with mock.patch('dj_cqrs.checks.check_tables', return_value=[problem]):
        result = manage('cqrs_bulk_load', '-i', str(path))
    _fails(
        result,
        "CommandError: The dj_cqrs tables are missing in database 'default'. Run `manage.py migrate dj_cqrs",
    )


def test_dump_into_a_missing_directory(tmp_path):
    _fails(
        manage('cqrs_bulk_dump', '-c', 'basic', '-o', str(tmp_path / 'no' / 'x.dump')),
        "doesn't exist! Create it or choose another --output.",
    )


def test_dump_over_an_existing_file(tmp_path):
    path = tmp_path / 'x.dump'
    path.write_text('keep')
    _fails(
        manage('cqrs_bulk_dump', '-c', 'basic', '-o', str(path)),
        f'CommandError: File {path} exists! Pass --force',
    )
    assert path.read_text() == 'keep'


# -- streams -------------------------------------------------------------------------------------------------
def test_bad_lines_in_the_diff_replica_stream():
    rows = [m.BasicMaster.objects.create(name='a') for _ in range(2)]
    m.BasicReplica.objects.all().delete()
    stream = '\n'.join(
        [
            'basic,t',
            f'[[{rows[0].pk},0]]',
            '[[1,0]',
            '{"a": 1}',
            '[[1]]',
            '[["abc",0]]',
            f'[[{rows[1].pk},0]]',
        ]
    )
    result = manage('cqrs_diff_replica', stdin=stream)
    _fails(
        result,
        "Input can't be parsed: line 3! not JSON",
        "Input can't be parsed: line 4! a JSON array is expected, not dict.",
        "Input can't be parsed: line 5! [1] is not a [pk, revision] pair.",
        'Input can\'t be parsed: line 6! pk "abc" does not fit BasicReplica.id',
        'CommandError: 4 of 6 input line(s) could not be used (first: line 3: not JSON',
        'the other 2 line(s) were processed.',
    )
    assert result.out.splitlines() == ['basic,t,replica', f'[{rows[0].pk}]', f'[{rows[1].pk}]']


def test_bad_lines_in_the_diff_sync_stream():
    rows = [m.BasicMaster.objects.create(name='a') for _ in range(2)]
    result = manage('cqrs_diff_sync', stdin=f'basic,t,None\n[{rows[0].pk}\n[null]\n[{rows[1].pk}]\n')
    _fails(
        result,
        "Input can't be parsed: line 2! not JSON",
        "Input can't be parsed: line 3! null is not a primary key.",
        'CommandError: 2 of 3 input line(s) could not be used',
    )
    assert result.out == 'Done!\n1 instance(s) synced.\n1 instance(s) processed.\n'


def test_bad_lines_in_the_deleted_streams():
    m.BasicReplica.objects.create(
        id=9, name='g', counter=0, cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    result = manage('cqrs_deleted_diff_master', stdin='basic,t\n[9, {"x": 1}]\n[9]\n')
    _fails(
        result,
        'Input can\'t be parsed: line 2! {"x":1} is not a primary key.',
        'CommandError: 1 of 2 input line(s)',
    )
    assert result.out == 'basic,t\n[9]\n'
    result = manage('cqrs_deleted_sync_replica', stdin='basic,t\n"9"\n[9]\n')
    _fails(
        result,
        "Input can't be parsed: line 2! a JSON array is expected, not str.",
        'CommandError: 1 of 2 input line(s)',
    )
    assert not m.BasicReplica.objects.filter(pk=9).exists()


def test_diff_sync_needs_the_replica_queue_column():
    _fails(
        manage('cqrs_diff_sync', stdin='basic,2024-05-01 10:00:00+00:00\n[[1,0]]\n'),
        'it has no replica queue, so it is not the output of cqrs_diff_replica',
    )


def test_blank_header_line():
    _fails(
        manage('cqrs_diff_replica', stdin='\n[[1,0]]\n'),
        "CommandError: Input can't be parsed: line 1! line 1 must be",
    )


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ('command', 'hint'),
    [
        ('cqrs_diff_replica', 'cqrs_diff_master --cqrs-id=X | cqrs_diff_replica'),
        ('cqrs_diff_sync', 'cqrs_diff_master --cqrs-id=X | cqrs_diff_replica | cqrs_diff_sync'),
        ('cqrs_deleted_diff_master', 'cqrs_deleted_diff_replica --cqrs-id=X | cqrs_deleted_diff_master'),
        ('cqrs_deleted_sync_replica', '| cqrs_deleted_sync_replica'),
        ('cqrs_reconcile', 'cqrs_reconcile replica --cqrs-id X | manage.py cqrs_reconcile master'),
    ],
)
def test_stdin_commands_refuse_a_terminal(command, hint):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=r'reads the .* from stdin; pipe it in') as info:
        _call_with(command, _Terminal())
    assert hint in str(info.value)


def _call_with(command, stream):
    from django.core.management import call_command

    return call_command(command, stdin=stream, stdout=io.StringIO(), stderr=io.StringIO())


def test_reconcile_bad_header_for_master_side():
    _fails(manage('cqrs_reconcile', 'master', stdin='basic,t\n'), 'not the header of a reconcile stream')
