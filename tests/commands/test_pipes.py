"""The tools as real processes joined by pipes.

* Between a master project and a replica project (``tests/e2e/projects``, subprocesses on real
  RabbitMQ and PostgreSQL), with our package or upstream's (``.venv-upstream``) on either side:
  dump | load, the revision diff and the deleted-rows diff, against golden dump files written by
  upstream's ``cqrs_bulk_dump``; ``cqrs_reconcile`` between two of our services.
* Within the in-process test project (``python -m django ... --settings tests.settings``), for
  UUID and string primary keys, which upstream's streams cannot carry.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.commands._tools import GOLDEN, Result, Step, django_admin, pipeline
from tests.e2e import harness
from tests.support import services

COMBOS = [('ours', 'ours'), ('upstream', 'ours'), ('ours', 'upstream')]


def _combo(master: str, replica: str):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.e2e]
    if 'upstream' in (master, replica):
        marks.append(pytest.mark.interop)
        if not harness.python_for('upstream').exists():
            marks.append(pytest.mark.skip(reason='no .venv-upstream (run scripts/upstream-venv)'))
    return pytest.param((master, replica), id=f'{master}-{replica}', marks=marks)


@pytest.fixture(scope='module', params=[_combo(m, r) for m, r in COMBOS])
def stack(request: pytest.FixtureRequest) -> Iterator[harness.Stack]:
    master, replica = request.param
    with harness.run_stack(master, replica, 'commands_pipes') as running:
        seed = Step(
            [
                str(harness.python_for(master)),
                'manage.py',
                'shell',
                '-c',
                f'exec(open({str(GOLDEN / "seed_master.py")!r}).read())',
            ],
            _env(running, 'master'),
            harness.MASTER_PROJECT,
        )
        (result,) = pipeline(seed)
        assert result.code == 0, result.err
        running.wait_rows('MyReplicaModel', {pk: {} for pk in (1, 2, 3, 4)})
        yield running


@pytest.fixture(autouse=True)
def _replica_in_step(request: pytest.FixtureRequest) -> None:
    """Each test starts with the replica's MyReplicaModel rows equal to the master's (by SQL)."""
    if 'stack' not in request.fixturenames:
        return
    stack = request.getfixturevalue('stack')
    with sql(stack.master_db) as conn:
        rows = conn.execute(
            'SELECT id, my_field, cqrs_revision, cqrs_updated FROM master_app_mymastermodel'
        ).fetchall()
    with sql(stack.replica_db) as conn, conn.transaction():
        conn.execute('DELETE FROM replica_app_myreplicamodel')
        for row in rows:
            conn.execute(
                'INSERT INTO replica_app_myreplicamodel (id, my_field, cqrs_revision, cqrs_updated) '
                'VALUES (%s, %s, %s, %s)',
                row,
            )


def _env(stack: harness.Stack, side: str) -> dict[str, str]:
    if side == 'master':
        extra = {'CQRS_E2E_META_ACCESS': '1' if stack.master_runtime == 'upstream' else '0'}
        return harness.project_env(harness.MASTER_PROJECT, stack.master_db, stack.broker, extra)
    return harness.project_env(harness.REPLICA_PROJECT, stack.replica_db, stack.broker)


def on(stack: harness.Stack, side: str, *args: str) -> Step:
    runtime = stack.master_runtime if side == 'master' else stack.replica_runtime
    project = harness.MASTER_PROJECT if side == 'master' else harness.REPLICA_PROJECT
    return Step([str(harness.python_for(runtime)), 'manage.py', *args], _env(stack, side), project)


@contextlib.contextmanager
def sql(dbname: str) -> Iterator:  # type: ignore[type-arg]
    import psycopg

    with psycopg.connect(
        host=services.PG_HOST, port=services.PG_PORT, user='postgres', dbname=dbname, autocommit=True
    ) as conn:
        yield conn


def _ok(results: list[Result]) -> Result:
    for result in results:
        assert result.code == 0, f'exit {result.code}:\n{result.err}'
    return results[-1]


def _records(dump: str) -> list[dict]:
    return [json.loads(line, parse_float=Decimal) for line in dump.split('\n')[1:]]


# -- dump | load -------------------------------------------------------------------------------------
def test_dump_is_byte_identical_to_upstreams(stack):
    (result,) = pipeline(on(stack, 'master', 'cqrs_bulk_dump', '-c', 'my_model', '-o', '-'))
    assert result.code == 0, result.err
    assert result.out == (GOLDEN / 'upstream_my_model.dump').read_text()
    assert result.err.splitlines()[-3:] == ['Done!', '4 instance(s) saved.', '4 instance(s) processed.']


def test_typed_dump_has_the_same_values_as_upstreams(stack):
    result = _ok(pipeline(on(stack, 'master', 'cqrs_bulk_dump', '-c', 'typed', '-o', '-')))
    golden = (GOLDEN / 'upstream_typed.dump').read_text()
    if stack.master_runtime == 'upstream':
        assert result.out == golden
    else:  # ours writes decimals as strings, with every digit
        assert [{**r, 'dec_field': Decimal(r['dec_field'])} for r in _records(result.out)] == _records(golden)


def test_dump_pipe_load_across_services(stack):
    with sql(stack.replica_db) as conn:
        conn.execute('UPDATE replica_app_myreplicamodel SET my_field = %s', ['stale'])
    load = _ok(
        pipeline(
            on(stack, 'master', 'cqrs_bulk_dump', '-c', 'my_model', '-o', '-'),
            on(stack, 'replica', 'cqrs_bulk_load', '-i', '-', '--clear=True', '-b', '2'),
        )
    )
    assert load.err.splitlines()[-2:] == ['Done!', '4 instance(s) loaded.']
    state = stack.r('state', model='MyReplicaModel')
    assert [(r['my_field'], r['cqrs_revision'], r['cqrs_updated']) for _, r in sorted(state.items())] == [
        ('plain', 0, '2024-05-01T10:00:01.123456+00:00'),
        ('with/slash', 1, '2024-05-01T10:00:02.123456+00:00'),
        ('unicode \u00e9 \u2713', 2, '2024-05-01T10:00:03.123456+00:00'),
        ('quote " and \\ backslash', 3, '2024-05-01T10:00:04.123456+00:00'),
    ]


@pytest.mark.parametrize('golden', ['upstream_typed.dump', 'typed_as_ours'])
def test_golden_dumps_load_on_the_replica(stack, golden, tmp_path):
    path = GOLDEN / golden
    if golden == 'typed_as_ours':
        text = (GOLDEN / 'upstream_typed.dump').read_text()
        lines = text.split('\n')
        records = [json.loads(line) for line in lines[1:]]
        for record in records:
            record['dec_field'] = format(Decimal(str(record['dec_field'])), 'f')
        path = tmp_path / 'typed.dump'
        path.write_text('\n'.join([lines[0], *(json.dumps(r, separators=(',', ':')) for r in records)]))
    _ok(pipeline(on(stack, 'replica', 'cqrs_bulk_load', '-i', str(path), '--clear=True')))
    rows = stack.r('state', model='TypedReplica', pks=[1, 2])
    assert rows['1']['dec_field'] == '12345678.123456'
    assert rows['1']['dt_field'] == '2024-05-01T10:00:00.000500+00:00'
    assert rows['1']['uuid_field'] == '12345678-1234-5678-1234-567812345678'
    assert (rows['1']['publisher'], rows['2']['nullable_field'], rows['2']['cqrs_revision']) == (1, 'x', 3)


# -- cqrs_sync ---------------------------------------------------------------------------------------
def test_sync_from_the_master_process(stack):
    with sql(stack.replica_db) as conn:
        conn.execute("UPDATE replica_app_myreplicamodel SET my_field = 'corrupted' WHERE id IN (1, 3)")
    result = _ok(
        pipeline(
            on(
                stack,
                'master',
                'cqrs_sync',
                '-cid',
                'my_model',
                '-f',
                '{"id__in": [1, 3]}',
                '-q',
                stack.broker.queue,
            )
        )
    )
    assert result.out.splitlines()[-3:] == ['Done!', '2 instance(s) synced.', '2 instance(s) processed.'], (
        result.err
    )
    stack.wait_rows('MyReplicaModel', {1: {'my_field': 'plain'}, 3: {'my_field': 'unicode \u00e9 \u2713'}})


# -- the revision diff ---------------------------------------------------------------------------------
def test_revision_diff_pipeline_across_services(stack):
    with sql(stack.replica_db) as conn:
        conn.execute(
            "UPDATE replica_app_myreplicamodel SET my_field = 'corrupted', cqrs_revision = -1 WHERE id = 2"
        )
        conn.execute('DELETE FROM replica_app_myreplicamodel WHERE id = 4')
    master, replica, synced = pipeline(
        on(stack, 'master', 'cqrs_diff_master', '--cqrs-id', 'my_model', '-b', '2'),
        on(stack, 'replica', 'cqrs_diff_replica'),
        on(stack, 'master', 'cqrs_diff_sync'),
    )
    _ok([master, replica, synced])
    assert 'PK to resync: {2}' in replica.err and 'PK to resync: {4}' in replica.err
    assert synced.out.count('1 instance(s) synced.') == 2
    stack.wait_rows(
        'MyReplicaModel', {2: {'my_field': 'with/slash'}, 4: {'my_field': 'quote " and \\ backslash'}}
    )


def test_revision_diff_stages_are_upstream_streams(stack):
    master = _ok(pipeline(on(stack, 'master', 'cqrs_diff_master', '-cid', 'my_model', '-b', '3')))
    lines = master.out.splitlines()
    assert lines[0].startswith('my_model,20')
    assert lines[1:] == ['[[1,0],[2,1],[3,2]]', '[[4,3]]']


# -- the deleted rows diff -------------------------------------------------------------------------------
def test_deleted_diff_pipeline_across_services(stack):
    with sql(stack.replica_db) as conn:
        for pk in (500, 501):
            conn.execute(
                'INSERT INTO replica_app_myreplicamodel (id, my_field, cqrs_revision, cqrs_updated) '
                "VALUES (%s, 'ghost', 0, '2024-01-01T00:00:00Z')",
                [pk],
            )
    replica, master, deleted = pipeline(
        on(stack, 'replica', 'cqrs_deleted_diff_replica', '-cid', 'my_model', '-b', '2'),
        on(stack, 'master', 'cqrs_deleted_diff_master'),
        on(stack, 'replica', 'cqrs_deleted_sync_replica'),
    )
    _ok([replica, master, deleted])
    assert 'PK to delete: [500, 501]' in master.err
    state = stack.r('state', model='MyReplicaModel')
    assert sorted(int(pk) for pk in state) == [1, 2, 3, 4]


# -- failures surface as exit statuses -----------------------------------------------------------------
def test_a_bad_stream_line_fails_our_stage(stack):
    side = 'replica' if stack.replica_runtime == 'ours' else 'master'
    command = 'cqrs_diff_replica' if side == 'replica' else 'cqrs_deleted_diff_master'
    good = '[[1,0]]' if command == 'cqrs_diff_replica' else '[1]'
    feed = Step(['printf', f'my_model,2024-05-01 10:00:00+00:00\\n[[1,0]\\n{good}\\n'])
    _, result = pipeline(feed, on(stack, side, command))
    assert result.code == 1
    assert "Input can't be parsed: line 2! not JSON" in result.err
    assert 'CommandError: 1 of 2 input line(s) could not be used' in result.err


# -- cqrs_reconcile between two services -----------------------------------------------------------------
def test_reconcile_between_two_services(stack):
    if stack.label != 'ours->ours':
        pytest.skip('both sides of cqrs_reconcile are ours')
    with sql(stack.replica_db) as conn:
        conn.execute(
            "UPDATE replica_app_myreplicamodel SET my_field = 'corrupted', cqrs_revision = -1 WHERE id = 1"
        )
        conn.execute('DELETE FROM replica_app_myreplicamodel WHERE id = 3')
        conn.execute(
            'INSERT INTO replica_app_myreplicamodel (id, my_field, cqrs_revision, cqrs_updated) '
            "VALUES (600, 'ghost', 0, '2024-01-01T00:00:00Z')"
        )
    _, dry = pipeline(
        on(stack, 'replica', 'cqrs_reconcile', 'replica', '--cqrs-id', 'my_model'),
        on(stack, 'master', 'cqrs_reconcile', 'master', '--dry-run'),
    )
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[1:4] == [
        'Differ: 1 [1]',
        'Missing on the replica: 1 [3]',
        'Deleted on the master: 1 [600]',
    ]
    assert dry.out.splitlines()[-1] == 'Dry run: nothing was sent.'
    _, fixed = pipeline(
        on(stack, 'replica', 'cqrs_reconcile', 'replica', '--cqrs-id', 'my_model', '-b', '2'),
        on(stack, 'master', 'cqrs_reconcile', 'master'),
    )
    assert fixed.code == 0, fixed.err
    assert 'Done!\n2 instance(s) synced.\n1 delete(s) sent.\n' in fixed.out
    stack.wait_rows(
        'MyReplicaModel', {1: {'my_field': 'plain'}, 3: {'my_field': 'unicode \u00e9 \u2713'}, 600: None}
    )


# -- in-process project as processes: UUID and string keys ----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_uuid_and_string_keys_through_process_pipes():
    from tests.testapp import models as m

    typed = [m.TypedMaster.objects.create(char=f'c{i}') for i in range(3)]
    m.TypedReplica.objects.filter(pk=typed[0].pk).update(char='corrupted', cqrs_revision=-1)
    m.CodeMaster.objects.create(code='k/1', name='one')
    m.CodeReplica.objects.create(
        code='ghost,1', name='g', cqrs_revision=0, cqrs_updated='2024-01-01T00:00:00Z'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTEST_')}
    steps = [
        Step(django_admin(*args), env)
        for args in (['cqrs_diff_master', '-cid', 'typed'], ['cqrs_diff_replica'], ['cqrs_diff_sync'])
    ]
    master, replica, synced = pipeline(*steps)
    _ok([master, replica, synced])
    assert f"PK to resync: {{'{typed[0].pk}'}}" in replica.err
    assert synced.out == 'Done!\n1 instance(s) synced.\n1 instance(s) processed.\n'
    assert m.TypedReplica.objects.get(pk=typed[0].pk).char == 'c0'

    steps = [
        Step(django_admin(*args), env)
        for args in (
            ['cqrs_deleted_diff_replica', '-cid', 'code'],
            ['cqrs_deleted_diff_master'],
            ['cqrs_deleted_sync_replica'],
        )
    ]
    _, master, _ = _ok_all(pipeline(*steps))
    assert "PK to delete: ['ghost,1']" in master.err
    assert list(m.CodeReplica.objects.values_list('pk', flat=True)) == ['k/1']

    m.BasicMaster.objects.create(name='x')
    m.BasicReplica.objects.all().delete()
    load = _ok(
        pipeline(
            Step(django_admin('cqrs_bulk_dump', '-c', 'basic', '-o', '-'), env),
            Step(django_admin('cqrs_bulk_load', '-i', '-'), env),
        )
    )
    assert load.err.endswith('Done!\n1 instance(s) loaded.\n')
    assert m.BasicReplica.objects.count() == 1


def _ok_all(results: list[Result]) -> list[Result]:
    _ok(results)
    return results
