"""master_site settings, following the Getting started guide (CQRS_E2E_* environment variables)."""

import os

from e2e_common.settings import *  # noqa: F403
from master_app.meta import get_cqrs_meta

INSTALLED_APPS = [
    'dj_cqrs',
    'master_app',
]

CQRS = {
    'transport': 'dj_cqrs.transport.RabbitMQTransport',
    'url': os.environ['CQRS_E2E_URL'],
    'exchange': os.environ.get('CQRS_E2E_EXCHANGE', 'cqrs'),
    'master': {
        'meta_function': get_cqrs_meta,
    },
}

# Test-only knobs of the crash tests (tests/crash); unset, the project is the guide's.
if os.environ.get('CQRS_E2E_OUTBOX') == '0':
    CQRS['master']['CQRS_OUTBOX'] = False  # upstream behaviour: a failed publish is dropped
if os.environ.get('CQRS_E2E_KILL_ON_PRODUCE'):
    # SIGKILL this process on the Nth produce call: after the commit, before the publish.
    CQRS['transport'] = 'master_app.crash_transport.KillOnProduceTransport'
