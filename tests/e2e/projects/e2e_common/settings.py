"""Settings shared by the e2e projects; every value that differs per run comes from the environment."""

import os

SECRET_KEY = 'e2e-not-secret'
DEBUG = False
USE_TZ = True
TIME_ZONE = 'UTC'
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': os.environ['CQRS_E2E_DB'],
        'USER': os.environ.get('CQRS_E2E_DB_USER', 'postgres'),
        'HOST': os.environ.get('CQRS_E2E_DB_HOST', '127.0.0.1'),
        'PORT': os.environ.get('CQRS_E2E_DB_PORT', '5432'),
    },
}

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s'}},
    'handlers': {'stderr': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'root': {'handlers': ['stderr'], 'level': 'WARNING'},
    'loggers': {
        'django-cqrs': {'level': os.environ.get('CQRS_E2E_LOG_LEVEL', 'INFO')},
        'dj_cqrs': {'level': os.environ.get('CQRS_E2E_LOG_LEVEL', 'INFO')},
        'pika': {'level': 'WARNING'},
    },
}
