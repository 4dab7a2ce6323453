"""Settings shared by the demo's two Django projects (master and replica).

Both projects read the same environment, set by ``examples/demo/run.py``:

* ``CQRS_DEMO_STATE``: the folder of the demo's state (SQLite databases, broker folders, logs);
* ``CQRS_DEMO_URL``: a broker URL. Unset (the default), the demo needs no server at all: kombu's
  ``filesystem://`` transport passes messages through files under ``$CQRS_DEMO_STATE/broker``.
  ``amqp://`` / ``amqps://`` URLs use ``RabbitMQTransport``; any other URL (``redis://...``)
  ``KombuTransport``;
* ``CQRS_DEMO_EXCHANGE``: the CQRS exchange (default ``cqrs``);
* ``CQRS_DEMO_MASTER_URL`` / ``CQRS_DEMO_REPLICA_URL``: where the other service's pages are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / 'templates'
STATE_DIR = Path(os.environ.get('CQRS_DEMO_STATE') or HERE.parent / '.state').resolve()
REPLICA_QUEUE = 'demo_replica'


def transport_settings() -> dict[str, Any]:
    """The transport part of ``settings.CQRS``."""
    url = os.environ.get('CQRS_DEMO_URL', '').strip()
    exchange = os.environ.get('CQRS_DEMO_EXCHANGE', '').strip() or 'cqrs'
    if url.startswith(('amqp://', 'amqps://')):
        return {'transport': 'dj_cqrs.transport.RabbitMQTransport', 'url': url, 'exchange': exchange}
    if url and not url.startswith('filesystem:'):
        return {'transport': 'dj_cqrs.transport.KombuTransport', 'url': url, 'exchange': exchange}
    broker = STATE_DIR / 'broker'
    return {
        'transport': 'dj_cqrs.transport.KombuTransport',
        'url': 'filesystem://',
        'exchange': exchange,
        'transport_options': {
            # One folder for both directions: every process reads and writes the same "broker".
            'data_folder_in': str(broker / 'messages'),
            'data_folder_out': str(broker / 'messages'),
            'control_folder': str(broker / 'control'),
            'polling_interval': 0.2,
        },
    }


def describe_transport() -> str:
    config = transport_settings()
    if config['url'] == 'filesystem://':
        return f'KombuTransport, filesystem:// in {STATE_DIR / "broker"}'
    from urllib.parse import urlsplit

    parts = urlsplit(config['url'])
    host = parts.hostname or ''
    port = f':{parts.port}' if parts.port else ''
    name = config['transport'].rsplit('.', 1)[-1]
    return f'{name}, {parts.scheme}://{host}{port}{parts.path or "/"}'


def django_settings(name: str, app: str, *, root_urlconf: str) -> dict[str, Any]:
    """The Django settings both projects share; ``name`` is ``master`` or ``replica``."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    return {
        'SECRET_KEY': f'dj_cqrs-demo-{name}-not-a-secret',
        'DEBUG': True,
        'ALLOWED_HOSTS': ['127.0.0.1', 'localhost', '[::1]'],
        'INSTALLED_APPS': ['django.contrib.contenttypes', 'dj_cqrs', app],
        'MIDDLEWARE': [
            'django.middleware.security.SecurityMiddleware',
            'django.middleware.common.CommonMiddleware',
            'django.middleware.csrf.CsrfViewMiddleware',
        ],
        'ROOT_URLCONF': root_urlconf,
        'TEMPLATES': [
            {
                'BACKEND': 'django.template.backends.django.DjangoTemplates',
                'DIRS': [str(TEMPLATES_DIR)],
                'APP_DIRS': True,
                'OPTIONS': {'context_processors': ['django.template.context_processors.request']},
            }
        ],
        'DATABASES': {
            'default': {
                'ENGINE': 'django.db.backends.sqlite3',
                'NAME': str(STATE_DIR / f'{name}.sqlite3'),
                # The web server and the consumer (or relay) write the same file.
                'OPTIONS': {'timeout': 20},
            }
        },
        'DEFAULT_AUTO_FIELD': 'django.db.models.AutoField',
        'USE_TZ': True,
        'TIME_ZONE': 'UTC',
        'LOGGING': {
            'version': 1,
            'disable_existing_loggers': False,
            'formatters': {'line': {'format': '%(asctime)s %(levelname)s %(name)s %(message)s'}},
            'handlers': {'console': {'class': 'logging.StreamHandler', 'formatter': 'line'}},
            'loggers': {
                'django-cqrs': {'handlers': ['console'], 'level': 'INFO'},
                'django.server': {'handlers': ['console'], 'level': 'WARNING', 'propagate': False},
            },
        },
    }
