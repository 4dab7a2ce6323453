"""What the replica hooks receive: meta (get_cqrs_meta override, meta_function) and previous_data."""

import pytest

pytestmark = pytest.mark.e2e

SAVE_KWARGS = ['instance_data', 'previous_data', 'signal_type']
DELETE_KWARGS = ['instance_data', 'signal_type']


def hooks_of(stack, cqrs_id, pk, count):
    return stack.wait_hooks(
        cqrs_id, pk, lambda h: len(h) >= count, f'{count} hook call(s) for {cqrs_id}#{pk}'
    )


def test_meta_from_get_cqrs_meta_override(stack):
    row = stack.m('create', model='MetaModel', fields={'owner': 'me', 'title': 't1'})
    pk = row['id']
    [create] = hooks_of(stack, 'meta', pk, 1)
    assert create['hook'] == 'create'
    meta = create['meta']
    assert meta['access'] == {'owner': True, 'others': False}
    # The override calls super(), which runs the meta_function.
    assert meta['via'] == 'meta_function'
    assert meta['cqrs_id'] == 'meta'
    assert meta['signal_type'] == 'SAVE'
    assert meta['kwargs'] == SAVE_KWARGS

    stack.m('update', model='MetaModel', pk=pk, fields={'owner': 'them', 'title': 't2'})
    hooks = hooks_of(stack, 'meta', pk, 2)
    update = hooks[1]
    assert update['hook'] == 'update'
    assert update['branch'] == 'others'  # the guide's cqrs_update override read meta['access']
    assert update['meta']['access'] == {'owner': False, 'others': True}
    stack.wait_rows('MetaReplica', {pk: {'owner': 'them', 'title': 't2', 'cqrs_revision': 1}})

    stack.m('update', model='MetaModel', pk=pk, fields={'owner': 'me'})
    update = hooks_of(stack, 'meta', pk, 3)[2]
    assert update['branch'] == 'owner'
    assert update['meta']['access'] == {'owner': True, 'others': False}

    stack.m('delete', model='MetaModel', pk=pk)
    delete = hooks_of(stack, 'meta', pk, 4)[3]
    assert delete['hook'] == 'delete'
    assert delete['meta']['access'] == {'owner': True, 'others': False}
    assert delete['meta']['signal_type'] == 'DELETE'
    assert delete['meta']['kwargs'] == DELETE_KWARGS
    stack.wait_rows('MetaReplica', {pk: None})


def test_meta_from_meta_function(stack):
    row = stack.m('create', model='TrackedModel', fields={'title': 'mf', 'counter': 1})
    pk = row['id']
    [create] = hooks_of(stack, 'tracked', pk, 1)
    meta = dict(create['meta'])
    if stack.master_runtime == 'upstream':
        assert meta.pop('access') == {}  # see master_app/meta.py
    assert meta == {
        'via': 'meta_function',
        'cqrs_id': 'tracked',
        'signal_type': 'SAVE',
        'kwargs': SAVE_KWARGS,
    }

    stack.m('delete', model='TrackedModel', pk=pk)
    delete = hooks_of(stack, 'tracked', pk, 2)[1]
    assert delete['hook'] == 'delete'
    assert delete['meta']['signal_type'] == 'DELETE'
    assert delete['meta']['kwargs'] == DELETE_KWARGS


def test_tracked_fields_previous_data(stack):
    row = stack.m('create', model='TrackedModel', fields={'title': 'a', 'counter': 1})
    pk = row['id']
    [create] = hooks_of(stack, 'tracked', pk, 1)
    assert create['hook'] == 'create'
    assert create['previous_data'] == {'title': None, 'counter': None}

    stack.m('update', model='TrackedModel', pk=pk, fields={'title': 'b'})
    update = hooks_of(stack, 'tracked', pk, 2)[1]
    assert update['hook'] == 'update'
    assert update['previous_data'] == {'title': 'a'}

    stack.m('update', model='TrackedModel', pk=pk, fields={'title': 'c', 'counter': 5, 'note': 'untracked'})
    update = hooks_of(stack, 'tracked', pk, 3)[2]
    assert update['previous_data'] == {'title': 'b', 'counter': 1}

    stack.m('f_add', model='TrackedModel', pk=pk, field='counter', by=2)
    update = hooks_of(stack, 'tracked', pk, 4)[3]
    assert update['previous_data'] == {'counter': 5}

    stack.m('update', model='TrackedModel', pk=pk, fields={'note': 'only untracked'})
    update = hooks_of(stack, 'tracked', pk, 5)[4]
    assert not update['previous_data']  # nothing tracked changed
    stack.wait_rows(
        'TrackedReplica', {pk: {'title': 'c', 'counter': 7, 'note': 'only untracked', 'cqrs_revision': 4}}
    )


def test_saves_in_one_transaction_make_one_event(stack):
    row = stack.m('create', model='TrackedModel', fields={'title': 'tx0', 'counter': 0})
    pk = row['id']
    hooks_of(stack, 'tracked', pk, 1)
    master_row = stack.m(
        'atomic_saves', model='TrackedModel', pk=pk, field='title', values=['tx1', 'tx2', 'tx3']
    )
    assert master_row['title'] == 'tx3'
    # Upstream re-applies the F('cqrs_revision') + 1 left on the object at every save, so the
    # revision jumps by the number of saves (3) while one event is sent; 1 is the clean result.
    assert master_row['cqrs_revision'] in (1, 3)
    rev = master_row['cqrs_revision']
    stack.wait_rows('TrackedReplica', {pk: {'title': 'tx3', 'cqrs_revision': rev}})
    # Barrier on the same object: a later event proves nothing else is in flight for it.
    after = stack.m('update', model='TrackedModel', pk=pk, fields={'note': 'after'})
    assert after['cqrs_revision'] == rev + 1
    stack.wait_rows('TrackedReplica', {pk: {'note': 'after', 'cqrs_revision': rev + 1}})
    hooks = stack.r('hooks', cqrs_id='tracked', pk=pk)
    assert [h['hook'] for h in hooks] == ['create', 'update', 'update']
    assert hooks[1]['previous_data'] == {'title': 'tx0'}
