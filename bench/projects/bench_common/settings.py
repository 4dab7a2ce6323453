"""Settings shared by the bench projects; every per-run value comes from BENCH_* environment variables.

Nothing is tuned: no LOGGING (Django's default, so the packages' INFO lines are not written), the
default CONN_MAX_AGE of 0 unless BENCH_CONN_MAX_AGE says otherwise, the packages' default CQRS
options. Both packages run with exactly this file.
"""

import os

SECRET_KEY = 'bench-not-secret'
DEBUG = False
USE_TZ = True
TIME_ZONE = 'UTC'
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': os.environ['BENCH_DB'],
        'USER': os.environ.get('BENCH_DB_USER', 'postgres'),
        'HOST': os.environ.get('BENCH_DB_HOST', '127.0.0.1'),
        'PORT': os.environ.get('BENCH_DB_PORT', '5432'),
        'CONN_MAX_AGE': int(os.environ.get('BENCH_CONN_MAX_AGE', '0')),
    },
}
