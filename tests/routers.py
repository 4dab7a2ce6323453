class OtherDbRouter:
    """Master ``OtherDbMaster`` and replica ``OtherDbReplica`` live on ``replica_db``."""

    models = {'otherdbmaster', 'otherdbreplica'}

    def _db(self, model):
        return 'replica_db' if model._meta.model_name in self.models else None

    def db_for_read(self, model, **hints):
        return self._db(model)

    def db_for_write(self, model, **hints):
        return self._db(model)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if model_name in self.models:
            return db == 'replica_db'
        if db == 'replica_db':
            return app_label in ('dj_cqrs', 'contenttypes', 'auth')
        return None
