from __future__ import annotations

from django.apps import AppConfig


class CQRSConfig(AppConfig):
    name = 'dj_cqrs'
    verbose_name = 'Django CQRS'
    default_auto_field = 'django.db.models.AutoField'

    def ready(self) -> None:
        # Registers the system checks; settings are validated there, never at import time.
        from dj_cqrs import checks, log_context  # noqa: F401

        log_context.install()
