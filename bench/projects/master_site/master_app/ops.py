"""What bench/run.py asks the master to do. Plain Django code, identical for both packages."""

from __future__ import annotations

import time
from typing import Any

from bench_common import cpu_seconds, summarize
from django.db import transaction

from master_app.models import BenchModel, PlainModel

PAYLOAD = 'p' * 100
MODELS = {'bench': BenchModel, 'plain': PlainModel}


def _new(model: Any, i: int, tag: str) -> Any:
    return model(name=f'{tag}-{i}', value=i, payload=PAYLOAD)


def save_block(
    model: str, n: int, mode: str = 'create', tag: str = 's', ids: list[int] | None = None, per_txn: int = 1
) -> Any:
    """``n`` saves, each in its own (auto)commit transaction, timed one by one.

    ``create``: a new row per save. ``update``: the rows ``ids`` (loaded once) saved round-robin.
    ``batch``: new rows, ``per_txn`` saves per transaction; the time of a save is its transaction's
    time (commit included) divided by ``per_txn``.
    """
    if mode == 'batch':
        return _save_batches(MODELS[model], n, per_txn, tag)
    cls = MODELS[model]
    objs = list(cls.objects.filter(id__in=ids).order_by('id')) if mode == 'update' else []
    if mode == 'update' and not objs:
        raise ValueError('update mode needs existing ids')
    times = []
    cpu0, t_start = cpu_seconds(), time.time()
    for i in range(n):
        if mode == 'create':
            t0 = time.perf_counter()
            _new(cls, i, tag).save()
        else:
            obj = objs[i % len(objs)]
            obj.value += 1
            t0 = time.perf_counter()
            obj.save()
        times.append(time.perf_counter() - t0)
    t_end = time.time()
    return {'n': n, 't_start': t_start, 't_end': t_end, 'cpu': cpu_seconds() - cpu0, **summarize(times)}


def _save_batches(cls: Any, n: int, per_txn: int, tag: str) -> Any:
    times = []
    cpu0, t_start = cpu_seconds(), time.time()
    for start in range(0, n, per_txn):
        t0 = time.perf_counter()
        with transaction.atomic():
            for i in range(start, min(n, start + per_txn)):
                _new(cls, i, tag).save()
        times.extend([(time.perf_counter() - t0) / per_txn] * per_txn)
    t_end = time.time()
    return {'n': n, 't_start': t_start, 't_end': t_end, 'cpu': cpu_seconds() - cpu0, **summarize(times)}


def create_ids(model: str, n: int, tag: str = 'seed') -> list[int]:
    """Create ``n`` rows in one transaction (one event each); return their ids."""
    cls = MODELS[model]
    ids = []
    with transaction.atomic():
        for i in range(n):
            obj = _new(cls, i, tag)
            obj.save()
            ids.append(obj.pk)
    return ids


def run_for(duration: float, rows_per_txn: int = 1, tag: str = 'e2e', max_rows: int = 0) -> Any:
    """Save new BenchModel rows as fast as possible for ``duration`` seconds, ``rows_per_txn`` per
    transaction (``max_rows`` caps the count, 0 = no cap)."""
    n = txns = 0
    cpu0, t_start = cpu_seconds(), time.time()
    deadline = t_start + duration
    while time.time() < deadline and (not max_rows or n < max_rows):
        if rows_per_txn == 1:
            _new(BenchModel, n, tag).save()
            n += 1
        else:
            with transaction.atomic():
                for _ in range(rows_per_txn):
                    _new(BenchModel, n, tag).save()
                    n += 1
        txns += 1
    t_end = time.time()
    return {'n': n, 'txns': txns, 't_start': t_start, 't_end': t_end, 'cpu': cpu_seconds() - cpu0}


def paced(rate: float, duration: float, tag: str = 'lat') -> Any:
    """One new row per transaction at a fixed rate; each row's commit time (epoch seconds).

    The timestamp is taken by an on-commit callback registered before the save, so it runs first
    at commit: it is the moment the row is committed, before the package publishes it.
    """
    count = int(rate * duration)
    commits: list[list[Any]] = []
    behind = 0.0
    cpu0, t_start = cpu_seconds(), time.time()
    for i in range(count):
        target = t_start + i / rate
        now = time.time()
        if target > now:
            time.sleep(target - now)
        else:
            behind = max(behind, now - target)
        stamp: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
            obj = _new(BenchModel, i, tag)
            obj.save()
        commits.append([obj.pk, stamp[0]])
    t_end = time.time()
    return {
        'n': count,
        'commits': commits,
        't_start': t_start,
        't_end': t_end,
        'max_behind': behind,
        'cpu': cpu_seconds() - cpu0,
    }


def update_rounds(ids: list[int], rounds: int) -> Any:
    """``rounds`` passes over the rows ``ids``; every save (value + 1) in its own transaction."""
    objs = list(BenchModel.objects.filter(id__in=ids).order_by('id'))
    cpu0, t_start = cpu_seconds(), time.time()
    for _ in range(rounds):
        for obj in objs:
            obj.value += 1
            obj.save()
    t_end = time.time()
    return {'n': rounds * len(objs), 't_start': t_start, 't_end': t_end, 'cpu': cpu_seconds() - cpu0}


HANDLERS = {
    'save_block': save_block,
    'create_ids': create_ids,
    'run_for': run_for,
    'paced': paced,
    'update_rounds': update_rounds,
}
