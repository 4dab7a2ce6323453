"""Deterministic reproduction of a replica race the soak found (run by test_replica_race.py).

Worker B creates row 4242 at revision 1 inside a transaction that holds the row's absent-row
lock; worker A's batch (revision 0 of the same row) reads the row while B has not committed, so
it sees no row, waits for the lock, and then writes. The row must stay at revision 1.

Run inside replica_site (DJANGO_SETTINGS_MODULE=replica_settings, CQRS_E2E_DB=<fresh database>).
Exit status 0: the row kept revision 1; 1: it went back.
"""

import datetime as dt
import sys
import threading
import time

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402

call_command('migrate', verbosity=0)

from replica_app.models import MyReplicaModel  # noqa: E402

from dj_cqrs.constants import SignalType  # noqa: E402
from dj_cqrs.payload import TransportPayload  # noqa: E402
from dj_cqrs.replica.apply import Item, apply_batch  # noqa: E402
from dj_cqrs.replica.managers import lock_absent_rows  # noqa: E402

PK = 4242
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def save(revision):
    data = {
        'id': PK,
        'my_field': f'rev{revision}',
        'cqrs_revision': revision,
        'cqrs_updated': str(T0 + dt.timedelta(seconds=revision)),
    }
    return TransportPayload(SignalType.SAVE, 'my_model', data, PK)


def worker_b():
    with transaction.atomic():
        lock_absent_rows(MyReplicaModel, [PK], 'default')
        MyReplicaModel.objects.create(
            id=PK, my_field='rev1', cqrs_revision=1, cqrs_updated=T0 + dt.timedelta(seconds=1)
        )
        time.sleep(1.0)  # A reads the row meanwhile: absent
    connections.close_all()


b = threading.Thread(target=worker_b)
b.start()
time.sleep(0.3)
apply_batch([Item(save(0), MyReplicaModel)])  # worker A
b.join()
row = MyReplicaModel.objects.get(id=PK)
print(f'after both commits the replica row is at revision {row.cqrs_revision} ({row.my_field})')
sys.exit(0 if row.cqrs_revision == 1 else 1)
