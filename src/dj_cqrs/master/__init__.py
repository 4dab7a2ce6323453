"""Master side: the models' mixin, change tracking, serialization and publishing."""
