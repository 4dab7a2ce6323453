"""Scenario 6: ``cqrs_bulk_dump`` (master) and ``cqrs_bulk_load`` (replica), rows/s.

Both commands run inside warm agents (``call_command``; no Django start-up in the figure). The
master table is filled in SQL; the dump goes to a file; the load reads it into an empty replica,
which must then equal the master. A package without one of the commands reports it as missing;
its load then reads the other package's dump (the file format is the same), and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios.common import (
    REPLICA_TABLE,
    NotConverged,
    Resources,
    Stack,
    compare,
    fill_master,
    truncate,
)

DUMP, LOAD = 'cqrs_bulk_dump', 'cqrs_bulk_load'


def measure(res: Resources, stacks: dict[str, Stack], rows: int, workdir: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    dumps: dict[str, tuple[Path, str]] = {}  # runtime -> (file, master db it came from)
    for runtime, stack in stacks.items():
        master = stack.master
        assert master is not None
        result: dict[str, Any] = {}
        out[runtime] = result
        res.reset(stack)
        fill_master(stack.master_db, rows)
        if not master.call('has_command', name=DUMP):
            result['dump_missing'] = f'{DUMP} is not a command of this package'
            continue
        path = workdir / f'{runtime}.dump'
        path.unlink(missing_ok=True)
        run = master.call('call', name=DUMP, args=['--cqrs-id=bench', f'--output={path}'])
        with path.open() as fh:
            lines = sum(1 for _ in fh)
        if lines != rows + 1:
            result['dump_failed'] = f'dump has {lines} lines, expected {rows + 1}'
            continue
        result['dump_rate'] = rows / run['elapsed']
        result['dump_cpu_s'] = run['cpu']
        dumps[runtime] = (path, stack.master_db)
    for runtime, stack in stacks.items():
        result = out[runtime]
        replica = stack.start_replica_agent()
        if not replica.call('has_command', name=LOAD):
            result['load_missing'] = f'{LOAD} is not a command of this package'
            continue
        source = runtime if runtime in dumps else next(iter(dumps), None)
        if source is None:
            result['load_failed'] = 'no dump file to load'
            continue
        path, master_db = dumps[source]
        if source != runtime:
            result['load_input'] = f"{source}'s dump"
        truncate(stack.replica_db, REPLICA_TABLE)
        run = replica.call('call', name=LOAD, args=[f'--input={path}'])
        problem = compare(master_db, stack.replica_db)
        if problem is not None:
            result['load_failed'] = f'replica differs from master after load: {problem}'
            continue
        result['load_rate'] = rows / run['elapsed']
        result['load_cpu_s'] = run['cpu']
    for runtime in stacks:
        (workdir / f'{runtime}.dump').unlink(missing_ok=True)
    return out


__all__ = ['NotConverged', 'measure']
