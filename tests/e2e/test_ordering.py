"""Ordering under 2 consumer workers: bursts of updates, and deletes right after an update."""

import pytest

pytestmark = pytest.mark.e2e

BURST = 200


def test_burst_of_updates_converges_to_last(stack):
    row = stack.m('create', model='MyMasterModel', fields={'my_field': 'v0'})
    pk = row['id']
    stack.wait_rows('MyReplicaModel', {pk: {'cqrs_revision': 0}})

    last = stack.m('burst', model='MyMasterModel', pk=pk, field='my_field', values=[f'v{i}' for i in range(1, BURST + 1)])
    assert last['my_field'] == f'v{BURST}'
    assert last['cqrs_revision'] == BURST
    state = stack.wait_rows('MyReplicaModel', {pk: {'cqrs_revision': BURST}}, timeout=60)
    assert state[str(pk)] == last


def test_burst_on_typed_model_in_parallel_rows(stack):
    """Several rows bursting at once: every row ends on its master's last revision and values."""
    rows = [stack.m('create', model='MyMasterModel', fields={'my_field': f'r{i}'}) for i in range(5)]
    stack.wait_rows('MyReplicaModel', {r['id']: {'cqrs_revision': 0} for r in rows})
    finals = [
        stack.m('burst', model='MyMasterModel', pk=r['id'], field='my_field', values=[f'{r["id"]}-{i}' for i in range(1, 41)])
        for r in rows
    ]
    state = stack.wait_rows('MyReplicaModel', {f['id']: {'cqrs_revision': 40} for f in finals}, timeout=60)
    for f in finals:
        assert state[str(f['id'])] == f


def test_update_then_delete_leaves_no_row(stack):
    rows = [stack.m('create', model='MyMasterModel', fields={'my_field': f'd{i}'}) for i in range(20)]
    stack.wait_rows('MyReplicaModel', {r['id']: {'cqrs_revision': 0} for r in rows})
    for r in rows:
        stack.m('update_then_delete', model='MyMasterModel', pk=r['id'], fields={'my_field': 'last words'})
    assert all(v is None for v in stack.m('get', model='MyMasterModel', pks=[r['id'] for r in rows]).values())
    stack.wait_rows('MyReplicaModel', {r['id']: None for r in rows}, timeout=20)
