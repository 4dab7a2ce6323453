"""Settings of the demo's master service: it owns Category and Item and publishes their changes."""

from demo_common import django_settings, transport_settings

globals().update(django_settings('master', 'catalog', root_urlconf='demo_master.urls'))

CQRS = {
    **transport_settings(),
    'master': {'CQRS_MESSAGE_TTL': 86400},
}
