"""CQRS_SERIALIZER with a Django REST framework ModelSerializer."""

import pytest

from dj_cqrs.testing import capture_events
from tests.testapp import models as m
from tests.testapp import serializers

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_drf_model_serializer_produces_instance_data(monkeypatch):
    drf = serializers.drf_author_serializer()
    monkeypatch.setattr(serializers, 'AuthorModelSerializer', drf, raising=False)
    monkeypatch.setattr(m.Author, 'CQRS_SERIALIZER', 'tests.testapp.serializers.AuthorModelSerializer')
    monkeypatch.setattr(m.Author, '_cqrs_serializer_class', None, raising=False)
    publisher = m.Publisher.objects.create(name='Pub')
    with capture_events() as events:
        author = m.Author.objects.create(name='Ann', publisher=publisher)
    (event,) = events.of('author')
    assert event.instance_data['id'] == author.pk
    assert event.instance_data['name'] == 'Ann'
    assert event.instance_data['publisher'] == 'Pub'
    assert event.instance_data['cqrs_revision'] == 0
    assert event.instance_data['cqrs_updated'] == str(m.Author.objects.get(pk=author.pk).cqrs_updated)
