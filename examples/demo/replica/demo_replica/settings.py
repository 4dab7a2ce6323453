"""Settings of the demo's replica service: it keeps read copies of the master's Category and Item."""

from demo_common import REPLICA_QUEUE, django_settings, transport_settings

globals().update(django_settings('replica', 'showcase', root_urlconf='demo_replica.urls'))

CQRS = {
    **transport_settings(),
    'queue': REPLICA_QUEUE,  # each replica service has its own queue
    'replica': {
        'CQRS_MAX_RETRIES': 3,
        'CQRS_RETRY_DELAY': 1,
        'CQRS_BATCH_SIZE': 50,
    },
}
