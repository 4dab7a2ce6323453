"""Scenario 1: the master's ``save()`` against a plain Django ``save()`` of the same columns.

In one master process per package: blocks of saves alternate between the plain model and the CQRS
model, so both see the same machine state: new rows, each save its own autocommit transaction;
updates of existing rows, the same; new rows, 100 saves per transaction (the master side of the
end-to-end scenario with 100 rows per transaction). The per-save time is the mean over the
blocks of a run (p50 kept too); the ratio is paired within the run. The replica queue is bound
(nothing unroutable) but not consumed during the blocks, and purged after each run.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios.common import MasterProbe, Resources, Stack, median

WARMUP = 200


def warm_up(stack: Stack) -> None:
    assert stack.master is not None
    for model in ('plain', 'bench'):
        stack.master.call('save_block', model=model, n=WARMUP, tag='warm')


def measure(res: Resources, stack: Stack, block: int, blocks: int = 2) -> dict[str, Any]:
    """One run: ``blocks`` alternating blocks of ``block`` saves per model, creates then updates."""
    master = stack.master
    assert master is not None
    res.reset(stack)
    probe = MasterProbe(master.pid)
    out: dict[str, Any] = {}
    for mode in ('create', 'update', 'batch'):
        ids = {}
        if mode == 'update':
            ids = {m: master.call('create_ids', model=m, n=100, tag='upd') for m in ('plain', 'bench')}
            stack.ns.purge(stack.ns.queue)
        samples: dict[str, list[dict[str, Any]]] = {'plain': [], 'bench': []}
        for _ in range(blocks):
            for model in ('plain', 'bench'):
                samples[model].append(
                    master.call(
                        'save_block',
                        model=model,
                        n=block,
                        mode=mode,
                        tag=mode,
                        ids=ids.get(model),
                        per_txn=100,
                    )
                )
        for model, results in samples.items():
            n = sum(r['n'] for r in results)
            out[f'{mode}_{model}_ms'] = 1000 * sum(r['mean'] * r['n'] for r in results) / n
            out[f'{mode}_{model}_p50_ms'] = 1000 * (median([r['p50'] for r in results]) or 0.0)
            out[f'{mode}_{model}_cpu_ms'] = 1000 * sum(r['cpu'] for r in results) / n
        out[f'{mode}_ratio'] = out[f'{mode}_bench_ms'] / out[f'{mode}_plain_ms']
    out.update(probe.end())
    stack.ns.purge(stack.ns.queue)
    return out
