from django.apps import AppConfig


class DocsAppConfig(AppConfig):
    name = 'tests.docs.docs_app'
    label = 'docs_app'
    default_auto_field = 'django.db.models.AutoField'
