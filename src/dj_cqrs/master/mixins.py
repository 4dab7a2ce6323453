"""Master model mixins (UPSTREAM_SPEC §2.1–2.3, §4.2)."""

from __future__ import annotations

from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import F
from django.db.models.base import ModelBase
from django.db.models.expressions import Combinable, Expression
from django.db.models.sql import UpdateQuery

from dj_cqrs import signals
from dj_cqrs.conf import cqrs_settings
from dj_cqrs.constants import ALL_BASIC_FIELDS, TRACKED_FIELDS_ATTR_NAME, SignalType
from dj_cqrs.master import handlers, outbox, publisher
from dj_cqrs.master.managers import MasterManager
from dj_cqrs.master.serialization import (
    FRESH_ATTR,
    RowReturning,
    class_serialization,
    default_serialization,
)
from dj_cqrs.master.tracking import CQRSTracker, get_tracker
from dj_cqrs.registry import MasterRegistry


class CQRSMeta(dict):  # type: ignore[type-arg]
    """The default metadata: a dict whose missing keys read as new nested dicts.

    The getting-started guide's ``get_cqrs_meta`` override writes ``meta['access']['owner']`` into
    the dict returned by ``super()``; this makes that snippet work as written.
    """

    def __missing__(self, key: Any) -> CQRSMeta:
        value = CQRSMeta()
        self[key] = value
        return value


class MasterMeta(ModelBase):
    """Metaclass of ``MasterMixin``: registers every concrete model class it creates."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any) -> Any:
        model_cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        if name != 'MasterMixin':
            MasterMeta.register(model_cls)
        return model_cls

    @staticmethod
    def register(model_cls: Any) -> Any:
        """Register a master model (also usable as a decorator); returns the class.

        Abstract classes are skipped, so intermediate bases may use ``MasterMixin``. Configuration
        problems are reported by the model's system checks, not raised here.
        """
        if model_cls._meta.abstract:
            return model_cls
        if model_cls._meta.proxy:
            # Django sends a proxy's signals with the proxy as sender: connect it too, so saves
            # through a proxy publish (upstream drops them). The concrete model keeps the CQRS_ID.
            handlers.MasterSignals.register_model(model_cls)
            return model_cls
        from dj_cqrs import checks

        if model_cls.CQRS_TRACKED_FIELDS is not None and not checks.tracked_fields_errors(model_cls):
            CQRSTracker.add_to_model(model_cls, model_cls.CQRS_TRACKED_FIELDS)
        MasterRegistry.register_model(model_cls)
        handlers.MasterSignals.register_model(model_cls)
        return model_cls


class _FusedEvent:
    """Execute wrapper for one save: the statement that writes the instance's row (its first
    INSERT or UPDATE of the model's table) also writes the row's outbox event (PostgreSQL).

    Where the caller reads what the statement returns (an INSERT with returning fields, our
    UPDATE ... RETURNING revision), the outbox id is one more column at the end, removed by
    ``take``; otherwise this wrapper adds ``RETURNING pk`` and reads the row itself. An UPDATE that
    matched no row wrote no event, and Django's INSERT after it is fused instead.

    For default serialization the statement also returns the serialized columns (before the
    outbox id): ``written``, the row as it was written, from which the event is serialized at
    commit unless something else may have written the row since (``publisher.SnapshotWatch``).
    """

    def __init__(self, instance: Any, using: str) -> None:
        self.instance = instance
        self.using = using
        self.connection = connections[using]
        self.prefixes = _statement_prefixes(type(instance), self.connection)
        self.caller_fetches = False
        self.outbox_id: int | None = None
        model = type(instance)
        self.returning = None if model.CQRS_SERIALIZER else RowReturning.of(model, self.connection)
        self.written: dict[str, Any] | None = None

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if self.outbox_id is not None or many or not sql.startswith(self.prefixes):
            return execute(sql, params, many, context)
        instance = self.instance
        if not instance.is_sync_instance():
            return execute(sql, params, many, context)
        pk_column = instance._meta.pk.column
        self.caller_fetches = ' RETURNING ' in sql
        if not self.caller_fetches:
            sql = f'{sql} RETURNING {self.connection.ops.quote_name(pk_column)}'
        if self.returning is not None:
            sql = f'{sql}, {self.returning.sql}'
        context[publisher.FUSED_CONTEXT_KEY] = True
        sql, params = outbox.fuse(
            self.connection,
            sql,
            params or (),
            instance.CQRS_ID,
            SignalType.SAVE,
            pk_column=pk_column,
            instance_pk=instance.pk,
            previous_data=instance.get_tracked_fields_data(),
        )
        result = execute(sql, params, many, context)
        if not self.caller_fetches:
            self._note(context['cursor'].fetchone())
        return result

    def _note(self, row: Any) -> Any:
        """Note the outbox id and the written row; return the columns the caller asked for."""
        if row is None:
            return None
        self.outbox_id = row[-1]
        end = len(row) - 1
        if self.returning is not None:
            end -= len(self.returning.attnames)
            self.written = self.returning.values(row[end:-1], self.connection)
        return row[:end]

    def take(self, row: Any) -> Any:
        """The caller's returned ``row`` without what the fused statement added (noted)."""
        if not self.caller_fetches:
            return row
        return self._note(row)


FUSE_ATTR = '_cqrs_fuse'


class _NextRevision(Expression):
    """``cqrs_revision + 1`` in an UPDATE: what ``F('cqrs_revision') + 1`` compiles to, without
    resolving and copying an expression tree on every save."""

    def __init__(self) -> None:
        super().__init__(output_field=models.IntegerField())

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _NextRevision:
        return self

    def as_sql(self, compiler: Any, connection: Any, **kwargs: Any) -> tuple[str, list[Any]]:
        column = compiler.query.get_meta().get_field('cqrs_revision').column
        return f'({connection.ops.quote_name(column)} + 1)', []

    def __repr__(self) -> str:
        return "F('cqrs_revision') + 1"


NEXT_REVISION = _NextRevision()


def _statement_prefixes(model: Any, connection: Any) -> tuple[str, str]:
    """How the statements that write ``model``'s row begin (cached per model and vendor)."""
    key = (model, connection.vendor)
    prefixes = _prefixes.get(key)
    if prefixes is None:
        table = connection.ops.quote_name(model._meta.db_table)
        prefixes = _prefixes[key] = (f'INSERT INTO {table} ', f'UPDATE {table} ')
    return prefixes


_prefixes: dict[tuple[Any, str], tuple[str, str]] = {}


def _returns_from_update(connection: Any) -> bool:
    if connection.vendor == 'postgresql':
        return True
    if connection.vendor == 'sqlite':
        return connection.Database.sqlite_version_info >= (3, 35)
    return False


class RawMasterMixin(models.Model):
    """Master model mixin without a metaclass; call ``MasterMeta.register(Model)`` yourself."""

    CQRS_ID: str | None = None
    CQRS_PRODUCE = True
    CQRS_FIELDS: Any = ALL_BASIC_FIELDS
    CQRS_SERIALIZER: str | None = None
    CQRS_TRACKED_FIELDS: Any = None

    cqrs_revision = models.IntegerField(
        default=0,
        help_text="This field must be incremented on any model update. It's used to for CQRS sync.",
    )
    cqrs_updated = models.DateTimeField(
        auto_now=True,
        help_text="This field must be incremented on every model update. It's used to for CQRS sync.",
    )

    objects = models.Manager()
    cqrs = MasterManager()

    class Meta:
        abstract = True

    @property
    def cqrs_saves_count(self) -> int:
        return getattr(self, '_cqrs_saves_count', 0)

    @property
    def is_initial_cqrs_save(self) -> bool:
        return self.cqrs_saves_count < 2

    def reset_cqrs_saves_count(self) -> None:
        if hasattr(self, '_cqrs_saves_count'):
            self._cqrs_saves_count = 0

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.pop('update_fields', None)
        update_cqrs_fields = kwargs.pop('update_cqrs_fields', cqrs_settings.master.auto_update_fields)
        using = kwargs.get('using') or router.db_for_write(type(self), instance=self)
        fusable = handlers.fusable(type(self), using)
        if connections[using].in_atomic_block or fusable:
            # (A fused save is one statement: the row and its outbox event commit together.)
            self._cqrs_save(args, kwargs, update_fields, update_cqrs_fields, using, fusable)
            return
        # In autocommit mode the change, the revision read-back and the event's registration
        # commit together.
        with transaction.atomic(using=using, savepoint=False):
            self._cqrs_save(args, kwargs, update_fields, update_cqrs_fields, using, fusable)
            if not any(isinstance(v, Combinable) for v in self.__dict__.values()):
                # Nothing else happens in this transaction: what is in memory is what commits, so
                # the event is serialized from the instance without reading the row back.
                self.__dict__[FRESH_ATTR] = True

    def _cqrs_save(
        self,
        args: Any,
        kwargs: dict[str, Any],
        update_fields: Any,
        update_cqrs_fields: bool,
        using: str,
        fusable: bool,
    ) -> None:
        self.__dict__.pop(FRESH_ATTR, None)
        initial = handlers.begin_save(self, using)
        if update_fields:
            update_fields = list(update_fields)
            if update_cqrs_fields:
                self.cqrs_revision = NEXT_REVISION  # type: ignore[assignment]
                update_fields.extend(f for f in ('cqrs_revision', 'cqrs_updated') if f not in update_fields)
        elif update_fields is None and not self._state.adding and initial:
            # (update_fields=[] saves nothing: upstream still assigns the F() and leaves it behind.)
            self.cqrs_revision = NEXT_REVISION  # type: ignore[assignment]
        elif isinstance(self.__dict__.get('cqrs_revision'), Combinable):
            # The F() + 1 of this transaction's first save is still on the instance; Django would
            # apply it again (a double increment upstream). Keep the stored value instead.
            self.cqrs_revision = F('cqrs_revision')  # type: ignore[assignment]
        self.save_tracked_fields()
        if initial and fusable:
            self.__dict__[FUSE_ATTR] = _FusedEvent(self, using)
        try:
            super().save(*args, update_fields=update_fields, **kwargs)
        finally:
            self.__dict__.pop(FUSE_ATTR, None)
        tracker = get_tracker(type(self))
        if tracker is not None:
            tracker.snapshot(self)

    def _save_table(self, *args: Any, **kwargs: Any) -> Any:
        fused = self.__dict__.get(FUSE_ATTR)
        if fused is None:
            return super()._save_table(*args, **kwargs)
        with fused.connection.execute_wrapper(fused):
            updated = super()._save_table(*args, **kwargs)
        if fused.outbox_id is not None:
            self.__dict__[handlers.OUTBOX_ID_ATTR] = (fused.using, fused.outbox_id, fused.written)
            if (
                fused.written is None
                and not fused.connection.in_atomic_block
                and not any(isinstance(v, Combinable) for v in self.__dict__.values())
            ):
                # One autocommit statement: what is in memory is what committed.
                self.__dict__[FRESH_ATTR] = True
        return updated

    def _do_insert(self, manager: Any, using: str, fields: Any, returning_fields: Any, raw: Any) -> Any:
        results = super()._do_insert(manager, using, fields, returning_fields, raw)
        fused = self.__dict__.get(FUSE_ATTR)
        if fused is not None and results:
            results = [fused.take(results[0]), *results[1:]]
        return results

    def _do_update(
        self,
        base_qs: Any,
        using: str,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
        *args: Any,
    ) -> Any:
        # Where UPDATE ... RETURNING exists, read the incremented revision back in the same statement:
        # the instance holds an int at once, a second save cannot apply the F() again, and a delete
        # later in the transaction knows the stored revision.
        if (
            args
            or not isinstance(self.__dict__.get('cqrs_revision'), Combinable)
            or not _returns_from_update(connections[using])
            or self._meta.select_on_save
            or not any(field.attname == 'cqrs_revision' for field, _, _ in values)
        ):
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update, *args)
        query = base_qs.filter(pk=pk_val).query.chain(UpdateQuery)
        query.add_update_fields(values)
        sql, params = query.get_compiler(using).as_sql()
        connection = connections[using]
        column = connection.ops.quote_name(self._meta.get_field('cqrs_revision').column)  # type: ignore[union-attr,arg-type]
        with connection.cursor() as cursor:
            cursor.execute(f'{sql} RETURNING {column}', params)
            row = cursor.fetchone()
        fused = self.__dict__.get(FUSE_ATTR)
        if fused is not None:
            row = fused.take(row)
        if row is None:
            return False
        self.cqrs_revision = row[0]
        return True

    def save_tracked_fields(self) -> None:
        tracker = get_tracker(type(self))
        if tracker is None or not self.is_initial_cqrs_save:
            return
        data = tracker.initial_state(self) if self._state.adding else tracker.changed(self)
        setattr(self, TRACKED_FIELDS_ATTR_NAME, data)

    def get_tracked_fields_data(self) -> dict[str, Any] | None:
        return getattr(self, TRACKED_FIELDS_ATTR_NAME, None)

    def to_cqrs_dict(self, using: str | None = None, sync: bool = False) -> dict[str, Any]:
        if self.CQRS_SERIALIZER:
            return class_serialization(self, using, sync=sync)
        return default_serialization(self, using, sync=sync)

    def cqrs_sync(self, using: str | None = None, queue: str | None = None) -> bool:
        """Publish the instance again as a SYNC event (to one replica if ``queue`` is given)."""
        if self._state.adding:
            return False
        if not self.CQRS_SERIALIZER and not self.__dict__.get(FRESH_ATTR):
            # (Rows a tool has just loaded carry FRESH_ATTR: their memory is the committed state.)
            try:
                self.refresh_from_db(using=using)
            except type(self).DoesNotExist:
                return False
        handlers.MasterSignals.post_save(type(self), instance=self, using=using, queue=queue, sync=True)
        return True

    def is_sync_instance(self) -> bool:
        return True

    def get_cqrs_meta(self, **kwargs: Any) -> Any:
        function = cqrs_settings.master.meta_function
        if function is None:
            return CQRSMeta()
        meta = function(obj=self, **kwargs)
        return CQRSMeta(meta) if type(meta) is dict else meta

    @classmethod
    def relate_cqrs_serialization(cls, queryset: Any) -> Any:
        return queryset

    def get_custom_cqrs_delete_data(self) -> Any:
        return None

    @classmethod
    def call_post_bulk_create(cls, instances: list[Any], using: str | None = None) -> None:
        signals.post_bulk_create.send(cls, instances=instances, using=using)

    @classmethod
    def call_post_update(cls, instances: list[Any], using: str | None = None) -> None:
        signals.post_update.send(cls, instances=instances, using=using)

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        from dj_cqrs import checks

        return [*super().check(**kwargs), *checks.master_model_errors(cls)]


class MasterMixin(RawMasterMixin, metaclass=MasterMeta):
    """Master model mixin: subclass it, set ``CQRS_ID``, and the model publishes its changes."""

    class Meta:
        abstract = True
