"""A plain Python CQRS serializer: called with the instance, exposes ``.data`` (no DRF needed)."""


class SerializedModelSerializer:
    def __init__(self, instance):
        self.instance = instance

    @property
    def data(self):
        obj = self.instance
        return {
            'id': obj.pk,
            'name': obj.name,
            'name_upper': obj.name.upper(),
            'publisher_name': obj.publisher.name if obj.publisher_id else None,
        }
