import pytest


@pytest.fixture
def cqrs_logs(caplog):
    caplog.set_level('DEBUG', logger='django-cqrs')
    return caplog


@pytest.fixture(autouse=True)
def _reset_publish_breaker():
    """Isolate tests from the publisher's process-wide circuit breaker (if the implementation has one)."""
    yield
    from dj_cqrs.master import publisher

    breaker = getattr(publisher, '_breaker', None)
    if isinstance(breaker, dict):
        breaker['open_until'] = 0.0
