"""Transport-less export of a master model (``cqrs_bulk_dump``, UPSTREAM_SPEC §8.3).

File format (upstream's): line 1 is the CQRS_ID, then one compact JSON ``instance_data`` object
per line, with no trailing newline. Every row of the default manager is written, in pk order, with
no ``is_sync_instance`` filtering.

Rows are serialized from the batch just loaded: default models from memory, serializer models
through ``bulk_relate_cqrs_serialization`` (one query with the model's
``relate_cqrs_serialization`` per batch, instead of one per row). A file is written under a
temporary name and renamed when complete, so an interrupted dump never leaves a truncated file
behind under the real name.

Models that serialize the default way (no ``CQRS_SERIALIZER``, neither ``to_cqrs_dict`` nor
``relate_cqrs_serialization`` overridden, nothing that could make an instance's attributes differ
from its row) skip the model instances: each page is one keyset query of
``values_list(<serialized columns>)``, and every column goes through a converter chosen once per
model that gives exactly what ``default_serialization`` gives for it. Anything else takes the
per-instance path.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query import ModelIterable, QuerySet
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init

from dj_cqrs.core import codec
from dj_cqrs.management.utils import batch_qs
from dj_cqrs.master.mixins import RawMasterMixin
from dj_cqrs.master.serialization import (
    FRESH_ATTR,
    _wire_value,
    bulk_relate_cqrs_serialization,
    serialized_fields,
)
from dj_cqrs.master.tracking import get_tracker
from dj_cqrs.ops.progress import Progress
from dj_cqrs.ops.sync import DEFAULT_BATCH, ToolError, keep_connection_usable


@dataclass
class DumpReport:
    processed: int = 0
    saved: int = 0
    failures: list[tuple[Any, BaseException]] = field(default_factory=list)
    #: rows deleted while the dump ran (between reading a page and serializing it): skipped
    vanished: int = 0


def default_output(cqrs_id: str) -> str:
    return f'{cqrs_id}.dump'


@contextlib.contextmanager
def open_output(path: str, *, force: bool = False) -> Iterator[TextIO]:
    """A text stream for the dump file ``path``, renamed into place only when the block succeeds."""
    if os.path.exists(path) and not force:
        raise ToolError(f'File {path} exists! Pass --force to overwrite it, or choose another --output.')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ToolError(f"Directory {directory} doesn't exist! Create it or choose another --output.")
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.part', dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it private)
    try:
        with os.fdopen(fd, 'w', encoding='ascii', newline='') as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def dump(
    model: Any,
    out: TextIO,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    on_failure: Callable[[Any, BaseException], None] | None = None,
) -> DumpReport:
    """Write every row of ``model`` to ``out`` in the dump format; return the counts."""
    progress = progress or Progress.disabled()
    report = DumpReport()
    qs = model._default_manager.all().order_by()
    if progress.enabled:
        progress.set_total(qs.count())
    out.write(model.CQRS_ID)
    plan = row_plan(model, qs)
    if plan is not None:
        _dump_rows(plan, qs, out, batch, progress, report, on_failure)
    else:
        _dump_instances(model, qs, out, batch, progress, report, on_failure)
    progress.close()
    if hasattr(out, 'flush'):
        out.flush()
    return report


def _dump_instances(
    model: Any,
    qs: Any,
    out: TextIO,
    batch: int,
    progress: Progress,
    report: DumpReport,
    on_failure: Callable[[Any, BaseException], None] | None,
) -> None:
    """The general path: model instances serialized by their ``to_cqrs_dict``."""
    using = qs.db
    serializer = bool(model.CQRS_SERIALIZER)
    for page in batch_qs(qs, batch):
        keep_connection_usable(using)
        chunk: list[str] = []
        before = report.processed
        if serializer:
            # The bulk-relate context loads the page once, with the model's related objects.
            with bulk_relate_cqrs_serialization(model.CQRS_ID) as relate:
                instances = list(page.only('pk'))
                for instance in instances:
                    relate.register(instance, using)
                for instance in instances:
                    _write_one(instance, using, chunk, report, on_failure)
        else:
            for instance in model.relate_cqrs_serialization(page):
                instance.__dict__[FRESH_ATTR] = True  # serialized from memory, not reloaded
                _write_one(instance, using, chunk, report, on_failure)
        out.write(''.join(chunk))
        progress.advance(report.processed - before)


def _write_one(
    instance: Any,
    using: str,
    chunk: list[str],
    report: DumpReport,
    on_failure: Callable[[Any, BaseException], None] | None,
) -> None:
    report.processed += 1
    try:
        line = codec.dumps(instance.to_cqrs_dict(using))
    except ObjectDoesNotExist:
        report.vanished += 1
        return
    except Exception as exc:
        report.failures.append((instance.pk, exc))
        if on_failure is not None:
            on_failure(instance.pk, exc)
        return
    chunk.append('\n' + line)
    report.saved += 1


# -- rows without model instances -------------------------------------------------------------------
# Field classes whose database values are already what the wire carries (int, bool, float, str or
# None: ``_wire_value`` returns them unchanged), and those whose values it turns into ``str``
# (Decimal, date, datetime, time, duration, UUID). Only these exact classes: a subclass may load
# other types, and goes through ``_wire_value`` itself, like every other field.
_AS_IS_FIELDS = frozenset(
    {
        models.AutoField,
        models.BigAutoField,
        models.SmallAutoField,
        models.IntegerField,
        models.BigIntegerField,
        models.SmallIntegerField,
        models.PositiveIntegerField,
        models.PositiveBigIntegerField,
        models.PositiveSmallIntegerField,
        models.BooleanField,
        models.FloatField,
        models.CharField,
        models.TextField,
    }
)
_STR_FIELDS = frozenset(
    {
        models.DecimalField,
        models.DateTimeField,
        models.DateField,
        models.TimeField,
        models.DurationField,
        models.UUIDField,
    }
)
_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


@dataclass(frozen=True)
class RowPlan:
    """How one ``values_list`` row of a model becomes its ``instance_data``."""

    #: the keys of ``instance_data``, in order
    names: tuple[str, ...]
    #: the columns read: one per name, then the pk's if it is not among them
    attnames: tuple[str, ...]
    #: position of the pk in a row
    pk_index: int
    #: (position, converter) applied to the values that are not None
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]
    #: (position, converter) applied to every value
    convert_always: tuple[tuple[int, Callable[[Any], Any]], ...]


def _same_function(model: Any, name: str, base: Any) -> bool:
    ours = getattr(model, name, None)
    return getattr(ours, '__func__', ours) is getattr(base, '__func__', base)


def _post_init_is_harmless(model: Any) -> bool:
    """No ``post_init`` receiver could change a loaded instance (the CQRS tracker only reads it)."""
    if not post_init.has_listeners(model):
        return True
    tracker = get_tracker(model)
    if tracker is None:
        return False
    try:
        live = post_init._live_receivers(model)  # (sync, async) since Django 5.0, a list before
        receivers = [r for part in live for r in part] if isinstance(live, tuple) else list(live)
    except Exception:
        return False
    return receivers == [tracker._on_init]


def row_plan(model: Any, qs: Any) -> RowPlan | None:
    """The plan for dumping ``qs`` of ``model`` from rows, or None if it needs model instances.

    Rows are used only where ``to_cqrs_dict`` would be ``default_serialization`` of an instance
    that holds exactly its row's values: no serializer class, no override of ``to_cqrs_dict`` or
    ``relate_cqrs_serialization``, no custom instance construction or attribute access, a plain
    queryset, and every serialized field a plain column read by ``value_from_object``.
    """
    if model.CQRS_SERIALIZER:
        return None
    if not _same_function(model, 'to_cqrs_dict', RawMasterMixin.to_cqrs_dict):
        return None
    if not _same_function(model, 'relate_cqrs_serialization', RawMasterMixin.relate_cqrs_serialization):
        return None
    for name in ('from_db', '__init__', '__setattr__', '__getattribute__'):
        if not _same_function(model, name, getattr(models.Model, name)):
            return None
    if getattr(model, '__getattr__', None) is not None:
        return None
    if (
        qs._iterable_class is not ModelIterable
        or type(qs).__iter__ is not QuerySet.__iter__
        or type(qs)._fetch_all is not QuerySet._fetch_all
        or qs.query.extra
        or qs.query.annotations
    ):
        return None
    if not _post_init_is_harmless(model):
        return None
    fields = list(serialized_fields(model))
    names = [f.name for f in fields]
    attnames = [f.attname for f in fields]
    converters: list[Callable[[Any], Any] | None] = []
    for f in fields:
        if type(f) in _AS_IS_FIELDS:
            converters.append(None)
        elif type(f) in _STR_FIELDS:
            converters.append(str)
        else:
            converters.append(_wire_value)
    always: list[tuple[int, Callable[[Any], Any]]] = []
    # default_serialization then sets cqrs_revision as it is and cqrs_updated through str().
    for name, convert in (('cqrs_revision', None), ('cqrs_updated', str)):
        try:
            field_ = model._meta.get_field(name)
        except FieldDoesNotExist:
            return None
        if name in names:
            index = names.index(name)
            converters[index] = None
        else:
            fields.append(field_)
            names.append(name)
            attnames.append(name)
            converters.append(None)
            index = len(names) - 1
        if convert is not None:
            always.append((index, convert))
    for f in fields:
        if type(f).value_from_object is not models.Field.value_from_object:
            return None
        if type(inspect.getattr_static(model, f.attname, None)) not in _PLAIN_DESCRIPTORS:
            return None
    pk_attname = model._meta.pk.attname
    if pk_attname in attnames:
        pk_index = attnames.index(pk_attname)
    else:
        attnames.append(pk_attname)
        pk_index = len(attnames) - 1
    return RowPlan(
        names=tuple(names),
        attnames=tuple(attnames),
        pk_index=pk_index,
        convert=tuple((i, c) for i, c in enumerate(converters) if c is not None),
        convert_always=tuple(always),
    )


def _dump_rows(
    plan: RowPlan,
    qs: Any,
    out: TextIO,
    batch: int,
    progress: Progress,
    report: DumpReport,
    on_failure: Callable[[Any, BaseException], None] | None,
) -> None:
    """Keyset-paginated pages of ``values_list`` rows, each read by one query, serialized by ``plan``."""
    if batch <= 0:
        raise ValueError('batch_size must be positive.')
    using = qs.db
    rows_qs = qs.order_by('pk').values_list(*plan.attnames)
    pk_index = plan.pk_index
    names = plan.names
    convert = plan.convert
    convert_always = plan.convert_always
    dumps = codec.dumps
    last = None
    while True:
        keep_connection_usable(using)
        page = list((rows_qs if last is None else rows_qs.filter(pk__gt=last))[:batch])
        if not page:
            return
        lines: list[str] = []
        append = lines.append
        for row in page:
            try:
                if convert or convert_always:
                    values = list(row)
                    for index, conv in convert:
                        value = values[index]
                        if value is not None:
                            values[index] = conv(value)
                    for index, conv in convert_always:
                        values[index] = conv(values[index])
                    append(dumps(dict(zip(names, values))))
                else:
                    append(dumps(dict(zip(names, row))))
            except Exception as exc:
                pk = row[pk_index]
                report.failures.append((pk, exc))
                if on_failure is not None:
                    on_failure(pk, exc)
        report.processed += len(page)
        report.saved += len(lines)
        if lines:
            out.write('\n' + '\n'.join(lines))
        progress.advance(len(page))
        last = page[-1][pk_index]
        if len(page) < batch:
            return
