"""Ordering under 2 consumer workers: bursts of updates, and deletes right after an update.

Upstream's replica has no protection here: two workers apply consecutive revisions of one row
concurrently without a row lock (a lost update can leave an older revision), and deletes are not
fenced (a SAVE applied after its DELETE re-creates the row). When the replica runs upstream these
tests therefore xfail when the race shows; with our replica they are strict.
"""

import pytest

from tests.e2e.harness import HarnessError

pytestmark = pytest.mark.e2e

BURST = 200


def wait_ordered(stack, model, expected, timeout=60):
    if stack.replica_runtime != 'upstream':
        return stack.wait_rows(model, expected, timeout=timeout)
    try:
        return stack.wait_rows(model, expected, timeout=timeout, settle=3)
    except HarnessError as exc:
        wrong = {
            pk: (exc.last or {}).get(str(pk))
            for pk, want in expected.items()
            if (exc.last or {}).get(str(pk)) != want
            and not (
                want
                and (exc.last or {}).get(str(pk))
                and all(exc.last[str(pk)].get(k) == v for k, v in want.items())
            )
        }
        pytest.xfail(f'upstream replica race under 2 workers; rows not as expected: {wrong}')


def test_burst_of_updates_converges_to_last(stack):
    row = stack.m('create', model='MyMasterModel', fields={'my_field': 'v0'})
    pk = row['id']
    stack.wait_rows('MyReplicaModel', {pk: {'cqrs_revision': 0}})

    last = stack.m(
        'burst', model='MyMasterModel', pk=pk, field='my_field', values=[f'v{i}' for i in range(1, BURST + 1)]
    )
    assert last['my_field'] == f'v{BURST}'
    assert last['cqrs_revision'] == BURST
    state = wait_ordered(stack, 'MyReplicaModel', {pk: {'cqrs_revision': BURST, 'my_field': f'v{BURST}'}})
    assert state[str(pk)] == last


def test_bursts_on_several_rows(stack):
    """Several rows updated in turn: every row ends on its master's last revision and values."""
    rows = [stack.m('create', model='MyMasterModel', fields={'my_field': f'r{i}'}) for i in range(5)]
    stack.wait_rows('MyReplicaModel', {r['id']: {'cqrs_revision': 0} for r in rows})
    finals = [
        stack.m(
            'burst',
            model='MyMasterModel',
            pk=r['id'],
            field='my_field',
            values=[f'{r["id"]}-{i}' for i in range(1, 41)],
        )
        for r in rows
    ]
    state = wait_ordered(
        stack, 'MyReplicaModel', {f['id']: {'cqrs_revision': 40, 'my_field': f['my_field']} for f in finals}
    )
    for f in finals:
        assert state[str(f['id'])] == f


def test_update_then_delete_leaves_no_row(stack):
    rows = [stack.m('create', model='MyMasterModel', fields={'my_field': f'd{i}'}) for i in range(20)]
    stack.wait_rows('MyReplicaModel', {r['id']: {'cqrs_revision': 0} for r in rows})
    for r in rows:
        stack.m('update_then_delete', model='MyMasterModel', pk=r['id'], fields={'my_field': 'last words'})
    assert all(v is None for v in stack.m('get', model='MyMasterModel', pks=[r['id'] for r in rows]).values())
    wait_ordered(stack, 'MyReplicaModel', {r['id']: None for r in rows}, timeout=30)
