"""master_site settings: the getting-started configuration, nothing tuned."""

import os

from bench_common.settings import *  # noqa: F403

INSTALLED_APPS = ['dj_cqrs', 'master_app']

CQRS = {
    'transport': 'dj_cqrs.transport.RabbitMQTransport',
    'url': os.environ['BENCH_URL'],
    'exchange': os.environ['BENCH_EXCHANGE'],
}
