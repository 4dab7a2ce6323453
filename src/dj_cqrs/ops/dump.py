"""Transport-less export of a master model (``cqrs_bulk_dump``, UPSTREAM_SPEC §8.3).

File format (upstream's): line 1 is the CQRS_ID, then one compact JSON ``instance_data`` object
per line, with no trailing newline. Every row of the default manager is written, in pk order, with
no ``is_sync_instance`` filtering.

Rows are serialized from the batch just loaded: default models from memory, serializer models
through ``bulk_relate_cqrs_serialization`` (one query with the model's
``relate_cqrs_serialization`` per batch, instead of one per row). A file is written under a
temporary name and renamed when complete, so an interrupted dump never leaves a truncated file
behind under the real name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.core.exceptions import ObjectDoesNotExist

from dj_cqrs.core import codec
from dj_cqrs.management.utils import batch_qs
from dj_cqrs.master.serialization import FRESH_ATTR, bulk_relate_cqrs_serialization
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
    using = qs.db
    progress.set_total(qs.count())
    out.write(model.CQRS_ID)
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
    progress.close()
    if hasattr(out, 'flush'):
        out.flush()
    return report


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
