"""Operations the e2e harness can run on the master (see e2e_common for the protocol)."""

from django.apps import apps
from django.db import transaction
from django.db.models import F
from e2e_common import row_state, rows_state


def _model(name):
    return apps.get_model('master_app', name)


def _assign(obj, fields):
    for name, value in fields.items():
        field = obj._meta.get_field(name)
        if field.is_relation:
            setattr(obj, field.attname, value)
        else:
            setattr(obj, name, field.to_python(value))


def _fresh(obj):
    return row_state(type(obj)._default_manager.get(pk=obj.pk))


def create(model, fields):
    obj = _model(model)()
    _assign(obj, fields)
    obj.save()
    return _fresh(obj)


def update(model, pk, fields, save_kwargs=None):
    obj = _model(model)._default_manager.get(pk=pk)
    _assign(obj, fields)
    obj.save(**(save_kwargs or {}))
    return _fresh(obj)


def f_add(model, pk, field, by=1):
    """``obj.<field> = F('<field>') + by; obj.save()``; returns the master row and the in-memory value."""
    obj = _model(model)._default_manager.get(pk=pk)
    setattr(obj, field, F(field) + by)
    obj.save()
    return {'row': _fresh(obj), 'in_memory': repr(getattr(obj, field))}


def delete(model, pk):
    _model(model)._default_manager.get(pk=pk).delete()


def burst(model, pk, field, values):
    """Save the same Python object once per value, each save in its own (auto)commit."""
    obj = _model(model)._default_manager.get(pk=pk)
    for value in values:
        _assign(obj, {field: value})
        obj.save()
    return _fresh(obj)


def update_then_delete(model, pk, fields):
    obj = _model(model)._default_manager.get(pk=pk)
    _assign(obj, fields)
    obj.save()
    obj.delete()


def atomic_saves(model, pk, values, field):
    """Several saves of one object inside one transaction (one event expected)."""
    obj = _model(model)._default_manager.get(pk=pk)
    with transaction.atomic():
        for value in values:
            _assign(obj, {field: value})
            obj.save()
    return _fresh(obj)


def bulk_create(model, rows):
    cls = _model(model)
    objs = []
    for fields in rows:
        obj = cls()
        _assign(obj, fields)
        objs.append(obj)
    created = cls.cqrs.bulk_create(objs)
    return [row_state(o) for o in cls._default_manager.filter(pk__in=[o.pk for o in created]).order_by('pk')]


def bulk_update(model, pks, values):
    cls = _model(model)
    count = cls.cqrs.bulk_update(cls._default_manager.filter(pk__in=pks), **values)
    return {'count': count, 'rows': rows_state(cls, pks)}


def get(model, pks=None):
    return rows_state(_model(model), pks)


def sync(model, pk, queue=None):
    """``cqrs_sync()`` of one row (a SYNC event)."""
    return _model(model)._default_manager.get(pk=pk).cqrs_sync(queue=queue)


def sequence(model, count, field, prefix='s'):
    """Create ``count`` rows, then update each once; every write is its own transaction (one event
    each, 2 * count in all). Returns the pks."""
    cls = _model(model)
    objs = []
    for i in range(count):
        obj = cls()
        _assign(obj, {field: f'{prefix}{i}-0'})
        obj.save()
        objs.append(obj)
    for i, obj in enumerate(objs):
        _assign(obj, {field: f'{prefix}{i}-1'})
        obj.save()
    return [o.pk for o in objs]


def load(model, field, duration, rate, pool=200, threads=1, seed=0, p_create=0.1, p_delete=0.05):
    """Random writes for ``duration`` seconds at about ``rate`` writes/s in all: creates, updates and
    deletes, each in its own transaction (one event each). Every thread owns its rows, so no write
    waits for another. Returns the counts."""
    import random
    import threading
    import time

    from django.db import connection

    cls = _model(model)
    per_thread = rate / threads
    counts = {'creates': 0, 'updates': 0, 'deletes': 0, 'errors': 0}
    lock = threading.Lock()
    start = time.monotonic()
    end = start + duration

    def worker(index):
        rng = random.Random(seed * 1000 + index)
        live = []
        mine = {'creates': 0, 'updates': 0, 'deletes': 0, 'errors': 0}
        next_at = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                if now < next_at:
                    time.sleep(next_at - now)
                next_at = max(next_at + 1.0 / per_thread, time.monotonic() - 0.5)
                roll = rng.random()
                try:
                    if not live or (roll < p_create and len(live) < pool) or len(live) < pool // 4:
                        obj = cls()
                        _assign(obj, {field: f'c{index}-{rng.randrange(10**9)}'})
                        obj.save()
                        live.append(obj.pk)
                        mine['creates'] += 1
                    elif roll < p_create + p_delete:
                        pk = live.pop(rng.randrange(len(live)))
                        cls._default_manager.get(pk=pk).delete()
                        mine['deletes'] += 1
                    else:
                        obj = cls._default_manager.get(pk=rng.choice(live))
                        _assign(obj, {field: f'u{index}-{rng.randrange(10**9)}'})
                        obj.save()
                        mine['updates'] += 1
                except Exception:
                    mine['errors'] += 1
                    import logging

                    logging.getLogger('e2e').exception('e2e load: write failed')
        finally:
            with lock:
                for key, value in mine.items():
                    counts[key] += value
            if threading.current_thread() is not threading.main_thread():
                connection.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(1, threads)]
    for t in workers:
        t.start()
    worker(0)
    for t in workers:
        t.join()
    counts['writes'] = counts['creates'] + counts['updates'] + counts['deletes']
    counts['elapsed'] = time.monotonic() - start
    return counts


HANDLERS = {
    'create': create,
    'update': update,
    'f_add': f_add,
    'delete': delete,
    'burst': burst,
    'update_then_delete': update_then_delete,
    'atomic_saves': atomic_saves,
    'bulk_create': bulk_create,
    'bulk_update': bulk_update,
    'get': get,
    'sync': sync,
    'sequence': sequence,
    'load': load,
}
