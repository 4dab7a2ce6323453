import pytest

from tests.testapp import models as m

pytestmark = pytest.mark.django_db(transaction=True, databases=['default', 'replica_db'])


def test_create_update_delete_roundtrip():
    obj = m.BasicMaster.objects.create(name='a')
    replica = m.BasicReplica.objects.get(pk=obj.pk)
    assert (replica.name, replica.cqrs_revision) == ('a', 0)
    obj.name = 'b'
    obj.save()
    assert obj.cqrs_revision == 1
    replica.refresh_from_db()
    assert (replica.name, replica.cqrs_revision) == ('b', 1)
    obj.delete()
    assert not m.BasicReplica.objects.filter(pk=obj.pk).exists()
