"""Settings of the in-process test suite (pytest-django)."""

import os
import uuid

SECRET_KEY = 'tests'
USE_TZ = True
TIME_ZONE = 'UTC'
INSTALLED_APPS = [
    'django.contrib.contenttypes',
    'django.contrib.auth',
    'django.contrib.admin',
    'django.contrib.sessions',
    'django.contrib.messages',
    'dj_cqrs',
    'tests.testapp',
]
_DB_NAME = os.environ.setdefault('CQRS_TEST_DB_NAME', f'dj_cqrs_test_{os.getpid()}_{uuid.uuid4().hex[:6]}')
DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': _DB_NAME,
        'USER': 'postgres',
        'HOST': os.environ.get('CQRS_TEST_PG_HOST', '127.0.0.1'),
        'PORT': int(os.environ.get('CQRS_TEST_PG_PORT', '5432')),
        'TEST': {'NAME': _DB_NAME},
    },
    'replica_db': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': _DB_NAME + '_r',
        'USER': 'postgres',
        'HOST': os.environ.get('CQRS_TEST_PG_HOST', '127.0.0.1'),
        'PORT': int(os.environ.get('CQRS_TEST_PG_PORT', '5432')),
        'TEST': {'NAME': _DB_NAME + '_r'},
    },
}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
CQRS = {
    'transport': 'dj_cqrs.testing.LoopbackTransport',
    'queue': 'replica',
    'master': {'CQRS_AUTO_UPDATE_FIELDS': False},
    'replica': {'CQRS_MAX_RETRIES': 2, 'CQRS_RETRY_DELAY': 0},
}
MIDDLEWARE = [
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
]
TEMPLATES = [
    {
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'APP_DIRS': True,
        'OPTIONS': {
            'context_processors': [
                'django.contrib.auth.context_processors.auth',
                'django.contrib.messages.context_processors.messages',
                'django.template.context_processors.request',
            ]
        },
    }
]
ROOT_URLCONF = 'tests.urls'
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'loggers': {'django-cqrs': {'level': 'DEBUG'}},
}
DATABASE_ROUTERS = ['tests.routers.OtherDbRouter']

# Subprocesses of the suite (a consumer under test) get their CQRS dict from the environment.
if os.environ.get('CQRS_TEST_CQRS_JSON'):
    import json

    CQRS = json.loads(os.environ['CQRS_TEST_CQRS_JSON'])
    LOGGING = {
        'version': 1,
        'disable_existing_loggers': False,
        'handlers': {'stderr': {'class': 'logging.StreamHandler'}},
        'loggers': {'django-cqrs': {'level': 'INFO', 'handlers': ['stderr']}},
    }
