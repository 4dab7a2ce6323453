from django.apps import AppConfig


class ShowcaseConfig(AppConfig):
    name = 'showcase'
    verbose_name = 'Showcase (replica)'

    def ready(self) -> None:
        from showcase import receivers

        receivers.connect()
