"""Read-only views of the replica for the e2e harness (see e2e_common for the protocol)."""

from django.apps import apps
from e2e_common import rows_state

from replica_app.models import HookLog


def state(model, pks=None):
    return rows_state(apps.get_model('replica_app', model), pks)


def hooks(cqrs_id, pk=None):
    qs = HookLog.objects.filter(cqrs_id=cqrs_id).order_by('id')
    if pk is not None:
        qs = qs.filter(pk_value=str(pk))
    return [
        {
            'hook': h.hook,
            'pk': h.pk_value,
            'branch': h.branch,
            'sync': h.sync,
            'mapped_data': h.mapped_data,
            'previous_data': h.previous_data,
            'meta': h.meta,
        }
        for h in qs
    ]


def count(model):
    return apps.get_model('replica_app', model)._default_manager.count()


HANDLERS = {'state': state, 'hooks': hooks, 'count': count}
