"""Rows of the e2e master project behind the golden dumps (run inside ``manage.py shell``).

``upstream_*.dump`` were written by upstream's ``cqrs_bulk_dump`` from exactly these rows; the
timestamps and revisions are fixed by SQL so that a dump of them is byte-for-byte reproducible.
"""

import datetime as dt
import decimal
import uuid

from django.db import connection
from master_app.models import MyMasterModel, Publisher, TypedModel

for name in ['plain', 'with/slash', 'unicode \u00e9 \u2713', 'quote " and \\ backslash']:
    MyMasterModel.objects.create(my_field=name)
publisher = Publisher.objects.create(name='pub/1')
TypedModel.objects.create(
    char_field='c/1',
    int_field=-7,
    dec_field=decimal.Decimal('12345678.123456'),
    dt_field=dt.datetime(2024, 5, 1, 10, 0, 0, 500, tzinfo=dt.timezone.utc),
    bool_field=True,
    uuid_field=uuid.UUID('12345678-1234-5678-1234-567812345678'),
    nullable_field=None,
    publisher=publisher,
)
TypedModel.objects.create(
    char_field='c2',
    int_field=0,
    dec_field=decimal.Decimal('0.5'),
    dt_field=dt.datetime(2024, 5, 2, 0, 0, 0, tzinfo=dt.timezone.utc),
    bool_field=False,
    uuid_field=uuid.UUID('00000000-0000-0000-0000-000000000001'),
    nullable_field='x',
    publisher=None,
)
with connection.cursor() as cursor:
    cursor.execute(
        'UPDATE master_app_mymastermodel SET cqrs_revision = id - 1, '
        "cqrs_updated = TIMESTAMPTZ '2024-05-01 10:00:00.123456+00' + (id || ' seconds')::interval"
    )
    cursor.execute(
        'UPDATE master_app_typedmodel SET cqrs_revision = 3, '
        "cqrs_updated = TIMESTAMPTZ '2024-05-01 12:00:00+00' + (id || ' seconds')::interval"
    )
    cursor.execute("UPDATE master_app_publisher SET cqrs_updated = TIMESTAMPTZ '2024-05-01 09:00:00+00'")

try:  # ours publishes asynchronously: let the events leave before this shell exits
    from dj_cqrs.master.publisher import wait_for_confirms
except ImportError:
    pass
else:
    wait_for_confirms()
