"""The Getting started guide's model, replicated across processes (create, update, delete)."""

import pytest

pytestmark = pytest.mark.e2e


def test_create_update_delete(stack):
    row = stack.m('create', model='MyMasterModel', fields={'my_field': 'first'})
    pk = row['id']
    assert row['cqrs_revision'] == 0
    got = stack.wait_rows('MyReplicaModel', {pk: {'my_field': 'first', 'cqrs_revision': 0}})
    assert got[str(pk)]['cqrs_updated'] == row['cqrs_updated']

    row = stack.m('update', model='MyMasterModel', pk=pk, fields={'my_field': 'second'})
    assert row['cqrs_revision'] == 1
    got = stack.wait_rows('MyReplicaModel', {pk: {'my_field': 'second', 'cqrs_revision': 1}})
    assert got[str(pk)] == row

    stack.m('delete', model='MyMasterModel', pk=pk)
    stack.wait_rows('MyReplicaModel', {pk: None})
