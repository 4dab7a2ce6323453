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
}
