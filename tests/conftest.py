import pytest


@pytest.fixture(autouse=True)
def _reset_replica_stores():
    from tests.testapp.models import CacheReplica, TablelessReplica

    CacheReplica.store.clear()
    TablelessReplica.received.clear()
    yield
