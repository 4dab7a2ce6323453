"""Settings of the docs sandbox: the project every ``<!-- run -->`` snippet of a page runs in.

One service that is master and replica at once, on a SQLite file, with the in-memory transport:
events wait in memory until ``MemoryTransport.drain()`` applies them. ``CQRS`` has both sides, so a
page can show a master model and its replica together.
"""

import os
from pathlib import Path

SANDBOX = Path(os.environ.get('DOCS_SANDBOX_DIR', '/tmp/dj_cqrs_docs_sandbox'))

SECRET_KEY = 'docs'
USE_TZ = True
TIME_ZONE = 'UTC'
INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', 'dj_cqrs', 'tests.docs.docs_app']
DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': str(SANDBOX / 'docs.sqlite3'),
        'OPTIONS': {'timeout': 20},
    }
}
# The snippets' models get their tables from the runner (schema_editor), not from migrations.
MIGRATION_MODULES = {'docs_app': None}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
CQRS = {
    'transport': 'dj_cqrs.testing.MemoryTransport',
    'queue': 'docs_replica',
    'replica': {'CQRS_MAX_RETRIES': 2, 'CQRS_RETRY_DELAY': 0},
}
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'stderr': {'class': 'logging.StreamHandler'}},
    'loggers': {'django-cqrs': {'handlers': ['stderr'], 'level': 'WARNING'}},
}
