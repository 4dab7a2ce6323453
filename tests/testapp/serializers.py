class AuthorSerializer:
    """A plain serializer (DRF-like: instance in, ``.data`` out)."""

    def __init__(self, instance):
        self.instance = instance

    @property
    def data(self):
        obj = self.instance
        return {
            'id': obj.id,
            'name': obj.name,
            'publisher': {'id': obj.publisher.id, 'name': obj.publisher.name} if obj.publisher else None,
            'books': [b.title for b in obj.books.all()],
        }


def drf_author_serializer():
    """A DRF ModelSerializer of Author (built lazily: DRF is a test dependency only)."""
    from rest_framework import serializers

    from tests.testapp.models import Author

    class AuthorModelSerializer(serializers.ModelSerializer):
        publisher = serializers.SlugRelatedField(slug_field='name', read_only=True)

        class Meta:
            model = Author
            fields = ('id', 'name', 'publisher')

    return AuthorModelSerializer
