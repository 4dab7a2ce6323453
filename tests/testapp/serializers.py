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
