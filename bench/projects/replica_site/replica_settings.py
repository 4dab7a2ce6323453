"""replica_site settings: the getting-started configuration, nothing tuned."""

import os

from bench_common.settings import *  # noqa: F403

INSTALLED_APPS = ['dj_cqrs', 'replica_app']

CQRS = {
    'transport': 'dj_cqrs.transport.RabbitMQTransport',
    'url': os.environ['BENCH_URL'],
    'exchange': os.environ['BENCH_EXCHANGE'],
    'queue': os.environ['BENCH_QUEUE'],
}
