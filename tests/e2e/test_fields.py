"""Field types, F-expressions, partial saves, bulk operations, CQRS_MAPPING and CQRS_SERIALIZER."""

import uuid

import pytest

pytestmark = pytest.mark.e2e

TYPED_FIELDS = (
    'id',
    'char_field',
    'int_field',
    'dec_field',
    'dt_field',
    'bool_field',
    'uuid_field',
    'nullable_field',
    'publisher',
    'cqrs_revision',
    'cqrs_updated',
)


def typed_fields(**overrides):
    fields = {
        'char_field': 'plain',
        'int_field': 1,
        'dec_field': '1.500000',
        'dt_field': '2024-05-01T10:00:00.123456+00:00',
        'bool_field': False,
        'uuid_field': str(uuid.uuid4()),
        'nullable_field': None,
        'publisher': None,
    }
    fields.update(overrides)
    return fields


def assert_same_row(master_row, replica_row, fields=TYPED_FIELDS):
    assert replica_row is not None, 'row missing on the replica'
    mismatched = {
        f: (master_row[f], replica_row.get(f)) for f in fields if replica_row.get(f) != master_row[f]
    }
    assert not mismatched, f'field: (master, replica) -> {mismatched}'


def check_decimal(stack, want, got):
    if got == want:
        return
    if stack.master_runtime == 'upstream':
        pytest.xfail(f'upstream master encodes Decimal as a JSON float: {want} arrived as {got}')
    if stack.replica_runtime == 'upstream':
        pytest.fail(
            f'{want} arrived at the upstream replica as {got}: our master sends Decimal as an exact JSON '
            'number, which upstream decodes as a float. A JSON string would arrive intact (Django '
            'converts it), e.g. \'"dec_field": "12345678901234.123456"\'.'
        )
    assert got == want


def converge(stack, model, master_row, timeout=None):
    """Wait until the replica row has the master's revision, then return it."""
    kwargs = {} if timeout is None else {'timeout': timeout}
    pk = master_row['id']
    state = stack.wait_rows(model, {pk: {'cqrs_revision': master_row['cqrs_revision']}}, **kwargs)
    return state[str(pk)]


def test_typed_create_and_updates_field_by_field(stack):
    publisher = stack.m('create', model='Publisher', fields={'name': 'typed-pub'})
    created = stack.m(
        'create',
        model='TypedModel',
        fields=typed_fields(
            char_field='h\u00e9llo \u201cw\u00f6rld\u201d / <b> \\ \u2603 \U0001f600',
            int_field=2147483647,
            dec_field='123456.654321',
            dt_field='2024-05-01T12:00:00.123456+02:00',
            bool_field=True,
            nullable_field=None,
            publisher=publisher['id'],
        ),
    )
    assert created['dec_field'] == '123456.654321'
    assert created['dt_field'] == '2024-05-01T10:00:00.123456+00:00'
    assert_same_row(created, converge(stack, 'TypedReplica', created))

    updated = stack.m(
        'update',
        model='TypedModel',
        pk=created['id'],
        fields={
            'char_field': '',
            'int_field': -2147483648,
            'dec_field': '-0.000001',
            'dt_field': '2030-12-31T23:59:59+00:00',  # no microseconds: str() drops them on the wire
            'bool_field': False,
            'uuid_field': str(uuid.uuid4()),
            'nullable_field': 'now set',
            'publisher': None,
        },
    )
    assert updated['cqrs_revision'] == 1
    assert_same_row(updated, converge(stack, 'TypedReplica', updated))

    again = stack.m(
        'update',
        model='TypedModel',
        pk=created['id'],
        fields={'nullable_field': None, 'publisher': publisher['id'], 'dec_field': '12345678901234.123457'},
    )
    assert again['cqrs_revision'] == 2
    replica_row = converge(stack, 'TypedReplica', again)
    assert_same_row(again, replica_row, [f for f in TYPED_FIELDS if f != 'dec_field'])
    check_decimal(stack, again['dec_field'], replica_row['dec_field'])


@pytest.mark.parametrize(
    'value',
    ['12345678901234.123456', '-98765432109876.543211', '0.000001', '3.141592'],
)
def test_decimal_precision_is_kept(stack, value):
    row = stack.m('create', model='TypedModel', fields=typed_fields(dec_field=value))
    assert row['dec_field'] == value
    replica_row = converge(stack, 'TypedReplica', row)
    if stack.master_runtime == 'upstream' and replica_row['dec_field'] != value:
        pytest.xfail(
            f'upstream master encodes Decimal as a JSON float: {value} arrived as {replica_row["dec_field"]}'
        )
    assert replica_row['dec_field'] == value


def test_f_expression_update_replicates_resolved_value(stack):
    row = stack.m('create', model='TypedModel', fields=typed_fields(int_field=10))
    converge(stack, 'TypedReplica', row)
    result = stack.m('f_add', model='TypedModel', pk=row['id'], field='int_field', by=5)
    master_row = result['row']
    assert master_row['int_field'] == 15
    assert master_row['cqrs_revision'] == 1
    replica_row = converge(stack, 'TypedReplica', master_row)
    assert_same_row(master_row, replica_row)


def test_update_fields_needs_update_cqrs_fields(stack):
    row = stack.m('create', model='TypedModel', fields=typed_fields(char_field='orig', int_field=1))
    converge(stack, 'TypedReplica', row)

    partial = stack.m(
        'update',
        model='TypedModel',
        pk=row['id'],
        fields={'char_field': 'partial'},
        save_kwargs={'update_fields': ['char_field']},
    )
    assert partial['char_field'] == 'partial'
    assert partial['cqrs_revision'] == 0, 'a partial save without the flag must not bump the revision'
    assert partial['cqrs_updated'] == row['cqrs_updated']

    # Barrier: an event published after the partial save has been applied...
    sentinel = stack.m('create', model='TypedModel', fields=typed_fields(char_field='sentinel'))
    converge(stack, 'TypedReplica', sentinel)
    # ...and the partial save has not reached the replica.
    replica_row = stack.r('state', model='TypedReplica', pks=[row['id']])[str(row['id'])]
    assert replica_row['char_field'] == 'orig'
    assert replica_row['cqrs_revision'] == 0

    flagged = stack.m(
        'update',
        model='TypedModel',
        pk=row['id'],
        fields={'int_field': 99},
        save_kwargs={'update_fields': ['int_field'], 'update_cqrs_fields': True},
    )
    assert flagged['cqrs_revision'] == 1
    assert flagged['cqrs_updated'] > row['cqrs_updated']
    replica_row = converge(stack, 'TypedReplica', flagged)
    assert_same_row(flagged, replica_row)
    assert replica_row['char_field'] == 'partial'  # the event carries the whole row
    assert replica_row['int_field'] == 99


def test_bulk_create_and_bulk_update(stack):
    created = stack.m(
        'bulk_create',
        model='TypedModel',
        rows=[typed_fields(char_field=f'bulk-{i}', int_field=i, dec_field=f'{i}.25') for i in range(5)],
    )
    assert len(created) == 5
    pks = [r['id'] for r in created]
    state = stack.wait_rows('TypedReplica', {r['id']: {'cqrs_revision': 0} for r in created})
    for row in created:
        assert_same_row(row, state[str(row['id'])])

    result = stack.m(
        'bulk_update', model='TypedModel', pks=pks, values={'char_field': 'bulk-updated', 'int_field': 7}
    )
    assert result['count'] == 5
    updated = result['rows']
    assert all(r['cqrs_revision'] == 1 and r['char_field'] == 'bulk-updated' for r in updated.values())
    state = stack.wait_rows('TypedReplica', {pk: {'cqrs_revision': 1} for pk in pks})
    for pk in pks:
        assert_same_row(updated[str(pk)], state[str(pk)])


def test_bulk_create_guide_model(stack):
    created = stack.m('bulk_create', model='MyMasterModel', rows=[{'my_field': f'm{i}'} for i in range(20)])
    stack.wait_rows(
        'MyReplicaModel', {r['id']: {'my_field': r['my_field'], 'cqrs_revision': 0} for r in created}
    )


def test_mapping(stack):
    pub = stack.m('create', model='Publisher', fields={'name': 'Penguin'})
    pk = pub['id']
    state = stack.wait_rows('PublisherReplica', {pk: {'title': 'Penguin', 'cqrs_revision': 0}})
    assert state[str(pk)]['ext_id'] == pk
    assert state[str(pk)]['cqrs_updated'] == pub['cqrs_updated']

    pub = stack.m('update', model='Publisher', pk=pk, fields={'name': 'Penguin Random House'})
    stack.wait_rows('PublisherReplica', {pk: {'title': 'Penguin Random House', 'cqrs_revision': 1}})

    stack.m('delete', model='Publisher', pk=pk)
    stack.wait_rows('PublisherReplica', {pk: None})


def test_custom_serializer(stack):
    pub = stack.m('create', model='Publisher', fields={'name': 'Ace'})
    row = stack.m('create', model='SerializedModel', fields={'name': 'dune', 'publisher': pub['id']})
    pk = row['id']
    state = stack.wait_rows(
        'SerializedReplica',
        {pk: {'name': 'dune', 'name_upper': 'DUNE', 'publisher_name': 'Ace', 'cqrs_revision': 0}},
    )
    assert state[str(pk)]['cqrs_updated'] == row['cqrs_updated']

    row = stack.m(
        'update', model='SerializedModel', pk=pk, fields={'name': 'Dune Messiah', 'publisher': None}
    )
    state = stack.wait_rows(
        'SerializedReplica',
        {
            pk: {
                'name': 'Dune Messiah',
                'name_upper': 'DUNE MESSIAH',
                'publisher_name': None,
                'cqrs_revision': 1,
            }
        },
    )
    assert state[str(pk)]['cqrs_updated'] == row['cqrs_updated']

    stack.m('delete', model='SerializedModel', pk=pk)
    stack.wait_rows('SerializedReplica', {pk: None})
