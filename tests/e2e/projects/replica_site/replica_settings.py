"""replica_site settings, following the Getting started guide (CQRS_E2E_* environment variables)."""

import os

from e2e_common.settings import *  # noqa: F403

INSTALLED_APPS = [
    'dj_cqrs',
    'replica_app',
]

CQRS = {
    'transport': 'dj_cqrs.transport.RabbitMQTransport',
    'url': os.environ['CQRS_E2E_URL'],
    'exchange': os.environ.get('CQRS_E2E_EXCHANGE', 'cqrs'),
    'queue': os.environ['CQRS_E2E_QUEUE'],  # Each replica service must have a unique queue.
}
