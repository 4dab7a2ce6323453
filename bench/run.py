#!/usr/bin/env python
"""dj_cqrs benchmark: ours, upstream django-cqrs 3.1.0 and this machine's raw ceilings, side by side.

    .venv/bin/python bench/run.py            # the full run (3 runs, under 15 minutes)
    .venv/bin/python bench/run.py --quick    # a ~2-minute smoke run (1 run, small sizes)
    .venv/bin/python bench/run.py --runs 5   # more runs; --only drain,latency for a subset

Every figure is a median over runs; ratios are paired within a run. A scenario whose replica does
not end up equal to its master (row count; revision and fields of every row) reports FAILED, not a
number. Results: bench/results/<timestamp>.json, a Markdown table on stdout and in bench/README.md
("Latest results"); process logs in .artifacts/bench/<timestamp>/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / 'bench'
RESULTS = BENCH / 'results'
README = BENCH / 'README.md'
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.scenarios import (  # noqa: E402
    bulk,
    coalescing,
    common,
    drain,
    latency,
    save_overhead,
    sync,
    throughput,
)

SCENARIOS = ('save', 'e2e', 'drain', 'latency', 'coalesce', 'bulk', 'sync', 'raw')
RUNTIMES = ('ours', 'upstream')
FAILURE_LOG = [REPO / '.artifacts' / 'bench' / 'failures.log']
START_MARK = '<!-- latest-results:start -->'
END_MARK = '<!-- latest-results:end -->'


@dataclass(frozen=True)
class Config:
    runs: int = 3
    save_runs: int = 5
    save_block: int = 150
    warmup_events: int = 50
    e2e_duration: float = 5.0
    e2e_cap: int = 600
    drain_events: int = 10_000
    drain_window: float = 15.0
    latency_rate: float = 50.0
    latency_duration: float = 20.0
    coalesce_rows: int = 100
    coalesce_rounds: int = 5
    bulk_rows: int = 5_000
    sync_rows: int = 600
    raw_publish: int = 10_000
    raw_blocking: int = 500
    scenarios: tuple[str, ...] = SCENARIOS
    quick: bool = False


QUICK = Config(
    runs=1,
    save_runs=2,
    save_block=100,
    warmup_events=20,
    e2e_duration=1.5,
    e2e_cap=200,
    drain_events=1_000,
    latency_duration=5.0,
    coalesce_rounds=2,
    bulk_rows=2_000,
    sync_rows=300,
    raw_publish=3_000,
    raw_blocking=200,
    quick=True,
)


def _scenario_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(',') if n.strip())
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f'unknown scenario(s) {unknown}; choose from {", ".join(SCENARIOS)}')
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be at least 1')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='bench/run.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--quick', action='store_true', help='a ~2-minute smoke run: 1 run, small sizes')
    parser.add_argument('--runs', type=_positive, default=None, help='runs per scenario (default 3; quick 1)')
    parser.add_argument(
        '--only',
        type=_scenario_list,
        default=SCENARIOS,
        metavar='LIST',
        help=f'subset of {",".join(SCENARIOS)}',
    )
    parser.add_argument(
        '--no-readme', action='store_true', help='do not rewrite "Latest results" in bench/README.md'
    )
    parser.add_argument(
        '--results-dir', type=Path, default=RESULTS, help='where the JSON goes (default bench/results)'
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    cfg = QUICK if args.quick else Config()
    cfg = replace(cfg, scenarios=tuple(args.only))
    if args.runs is not None:
        cfg = replace(cfg, runs=args.runs, save_runs=max(args.runs, cfg.save_runs))
    return cfg


# --------------------------------------------------------------------------------------------
# Samples and summaries


@dataclass
class Samples:
    """``data[scenario][variant][runtime]`` = one dict per run (``failed`` / ``missing`` keys when so)."""

    data: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = field(default_factory=dict)

    def add(self, scenario: str, variant: str, runtime: str, result: dict[str, Any]) -> None:
        self.data.setdefault(scenario, {}).setdefault(variant, {}).setdefault(runtime, []).append(result)

    def runs(self, scenario: str, variant: str, runtime: str) -> list[dict[str, Any]]:
        return self.data.get(scenario, {}).get(variant, {}).get(runtime, [])


def _status(runs: list[dict[str, Any]], metric: str) -> str | None:
    for run in runs:
        for key, value in run.items():
            if key == 'failed' or (key.endswith('_failed') and metric.startswith(key[: -len('_failed')])):
                return f'FAILED: {value}'
    for run in runs:
        for key, value in run.items():
            if key == 'missing' or (key.endswith('_missing') and metric.startswith(key[: -len('_missing')])):
                return f'missing: {value}'
    return None


def aggregate(samples: Samples, scenario: str, variant: str, runtime: str, metric: str) -> Any:
    """Median of ``metric`` over the runs; FAILED / missing text when a run says so; None if not run."""
    runs = samples.runs(scenario, variant, runtime)
    if not runs:
        return None
    status = _status(runs, metric)
    if status:
        return status
    values = [r[metric] for r in runs if isinstance(r.get(metric), (int, float))]
    return common.median(values) if values else None


def paired_ratio(samples: Samples, scenario: str, variant: str, a: str, b: str, metric: str) -> Any:
    """Median over runs of a[i][metric] / b[i][metric] (same run index)."""
    runs_a, runs_b = samples.runs(scenario, variant, a), samples.runs(scenario, variant, b)
    if not runs_a or not runs_b:
        return None
    status = _status(runs_a, metric) or _status(runs_b, metric)
    if status:
        return status
    ratios = [
        x[metric] / y[metric]
        for x, y in zip(runs_a, runs_b)
        if isinstance(x.get(metric), (int, float)) and isinstance(y.get(metric), (int, float)) and y[metric]
    ]
    return common.median(ratios) if ratios else None


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str
    measure: str
    unit: str
    ours: Any = None
    upstream: Any = None
    ceiling: Any = None


def build_rows(samples: Samples, cfg: Config) -> list[Row]:
    rows: list[Row] = []

    def add(
        scenario: str, key: str, measure: str, unit: str, variant: str, metric: str, ceiling: Any = None
    ) -> None:
        rows.append(
            Row(
                scenario,
                key,
                measure,
                unit,
                aggregate(samples, scenario, variant, 'ours', metric),
                aggregate(samples, scenario, variant, 'upstream', metric),
                ceiling,
            )
        )

    def raw(variant: str, metric: str = 'rate') -> Any:
        return aggregate(samples, 'raw', variant, 'raw', metric)

    blocking = raw('publish_blocking')
    blocking_ms = 1000 / blocking if isinstance(blocking, (int, float)) and blocking else None
    for mode, what in (
        ('create', 'a new row'),
        ('update', 'an existing row'),
        ('batch', 'a new row, 100 per transaction'),
    ):
        add(
            'save',
            f'save_{mode}_ms',
            f'save() of {what}, per save',
            'ms',
            'default',
            f'{mode}_bench_ms',
            aggregate(samples, 'save', 'default', 'ours', f'{mode}_plain_ms'),
        )
        add(
            'save',
            f'save_{mode}_ratio',
            '  ratio to a plain Django save() (paired per run)',
            'x',
            'default',
            f'{mode}_ratio',
        )
        add(
            'save',
            f'save_{mode}_cpu',
            f'  master CPU per save ({what})',
            'ms',
            'default',
            f'{mode}_bench_cpu_ms',
            aggregate(samples, 'save', 'default', 'ours', f'{mode}_plain_cpu_ms'),
        )
    rows.append(
        Row(
            'save',
            'save_confirm_floor',
            '  floor: one publish + its confirm (raw pika, blocking)',
            'ms',
            ceiling=blocking_ms,
        )
    )

    for workers in (1, 2):
        for per_txn in (1, 100):
            v = f'w{workers}_r{per_txn}'
            label = (
                f'{workers} worker{"s" if workers > 1 else ""}, {per_txn} row{"s" if per_txn > 1 else ""}/txn'
            )
            plain_ms = aggregate(
                samples, 'save', 'default', 'ours', f'{"batch" if per_txn > 1 else "create"}_plain_ms'
            )
            plain_rate = 1000 / plain_ms if isinstance(plain_ms, (int, float)) and plain_ms else None
            add('e2e', f'e2e_{v}', f'end to end, {label}', 'events/s', v, 'e2e_rate')
            add(
                'e2e',
                f'e2e_master_{v}',
                "  master's own save rate, same run (baseline: plain save)",
                'events/s',
                v,
                'master_rate',
                plain_rate,
            )
            add('e2e', f'e2e_ratio_{v}', '  end to end / master rate', 'x', v, 'e2e_over_master')
            add('e2e', f'e2e_cpu_{v}', '  consumer CPU per event', 'ms', v, 'consumer_cpu_ms_per_event')
            add('e2e', f'e2e_rss_{v}', '  consumer worker peak RSS', 'MB', v, 'worker_peak_rss_mb')

    raw_drain = raw('consume_upsert')
    for cma in (0, 60):
        v = f'cma{cma}'
        add(
            'drain',
            f'drain_{v}',
            f'drain {cfg.drain_events} events (at most {cfg.drain_window:g} s), 1 worker, CONN_MAX_AGE={cma}',
            'events/s',
            v,
            'rate',
            raw_drain,
        )
        rows.append(
            Row(
                'drain',
                f'drain_x_{v}',
                '  ours / upstream (paired per run)',
                'x',
                paired_ratio(samples, 'drain', v, 'ours', 'upstream', 'rate'),
            )
        )
        add(
            'drain',
            f'drain_startup_{v}',
            '  incl. start-up (spawn to last apply)',
            'events/s',
            v,
            'rate_incl_startup',
        )
        add(
            'drain',
            f'drain_cpu_{v}',
            '  consumer CPU per event (after first apply)',
            'ms',
            v,
            'consumer_cpu_ms_per_event',
            raw('consume_upsert', 'cpu_ms_per_event'),
        )
        add(
            'drain',
            f'drain_rss_{v}',
            '  consumer worker peak RSS',
            'MB',
            v,
            'worker_peak_rss_mb',
            raw('consume_upsert', 'peak_rss_mb'),
        )

    rate_label = f'{cfg.latency_rate:g} writes/s for {cfg.latency_duration:g} s'
    for q in ('p50', 'p95', 'p99', 'max'):
        add(
            'latency',
            f'latency_{q}',
            f'commit -> replica commit {q}, {rate_label}',
            'ms',
            'default',
            f'{q}_ms',
        )
    add('latency', 'latency_rss', '  consumer worker peak RSS', 'MB', 'default', 'worker_peak_rss_mb')

    events = cfg.coalesce_rows * cfg.coalesce_rounds
    label = f'{cfg.coalesce_rows} rows x {cfg.coalesce_rounds} updates ({events} events)'
    add('coalesce', 'coalesce_e2e', f'end to end, {label}', 'events/s', 'default', 'e2e_rate')
    add('coalesce', 'coalesce_master', "  master's own save rate", 'events/s', 'default', 'master_rate')
    add(
        'coalesce',
        'coalesce_writes',
        '  replica row writes for those events',
        'writes',
        'default',
        'replica_writes',
    )
    add('coalesce', 'coalesce_cpu', '  consumer CPU per event', 'ms', 'default', 'consumer_cpu_ms_per_event')
    add('coalesce', 'coalesce_rss', '  consumer worker peak RSS', 'MB', 'default', 'worker_peak_rss_mb')

    add('bulk', 'bulk_dump', f'cqrs_bulk_dump, {cfg.bulk_rows} rows', 'rows/s', 'default', 'dump_rate')
    add(
        'bulk',
        'bulk_load',
        f'cqrs_bulk_load, {cfg.bulk_rows} rows',
        'rows/s',
        'default',
        'load_rate',
        raw('upsert_sql'),
    )

    add('sync', 'sync', f'cqrs_sync -f={{}} until applied, {cfg.sync_rows} rows', 'rows/s', 'default', 'rate')
    add('sync', 'sync_command', '  the command alone (publishing)', 'rows/s', 'default', 'command_rate')
    add('sync', 'sync_rss', '  consumer worker peak RSS', 'MB', 'default', 'worker_peak_rss_mb')

    for variant, label in (
        ('publish_none', 'pika publish, persistent, no confirms'),
        ('publish_pipelined', 'pika publish, persistent, pipelined confirms'),
        ('publish_blocking', 'pika publish, persistent, wait for each confirm'),
        ('consume_upsert', f'pika consume + batched upsert, drain {cfg.drain_events}'),
        ('upsert_sql', f'one-transaction SQL upsert of {cfg.drain_events} rows'),
    ):
        rows.append(
            Row(
                'raw',
                f'raw_{variant}',
                label,
                'msgs/s' if 'publish' in variant else 'rows/s',
                ceiling=raw(variant),
            )
        )
    return [
        r for r in rows if r.scenario in cfg.scenarios or (r.scenario == 'save' and 'save' in cfg.scenarios)
    ]


# --------------------------------------------------------------------------------------------
# Targets (the acceptance figures, for our package)


@dataclass(frozen=True)
class Target:
    name: str
    key: str  # a Row key
    op: str  # '>=' or '<='
    required: float
    column: str = 'ours'
    unit: str = ''


TARGETS = (
    Target('replica drain, 1 worker (CONN_MAX_AGE=0)', 'drain_cma0', '>=', 5000, unit='events/s'),
    Target('replica drain, 1 worker (CONN_MAX_AGE=60)', 'drain_cma60', '>=', 5000, unit='events/s'),
    Target('drain vs upstream (CONN_MAX_AGE=0)', 'drain_x_cma0', '>=', 10, unit='x'),
    Target('drain vs upstream (CONN_MAX_AGE=60)', 'drain_x_cma60', '>=', 10, unit='x'),
    Target('end to end / master rate, 1 worker, 1 row/txn', 'e2e_ratio_w1_r1', '>=', 0.8, unit='x'),
    Target('end to end / master rate, 2 workers, 1 row/txn', 'e2e_ratio_w2_r1', '>=', 0.8, unit='x'),
    Target('end to end / master rate, 1 worker, 100 rows/txn', 'e2e_ratio_w1_r100', '>=', 0.8, unit='x'),
    Target('end to end / master rate, 2 workers, 100 rows/txn', 'e2e_ratio_w2_r100', '>=', 0.8, unit='x'),
    Target('end to end, 100 rows/txn, 1 worker', 'e2e_w1_r100', '>=', 3000, unit='events/s'),
    Target('end to end, 100 rows/txn, 2 workers', 'e2e_w2_r100', '>=', 3000, unit='events/s'),
    Target('latency p50 at 50 writes/s', 'latency_p50', '<=', 4, unit='ms'),
    Target('latency p99 at 50 writes/s', 'latency_p99', '<=', 10, unit='ms'),
    Target('save (outbox + confirms) / plain save, new row', 'save_create_ratio', '<=', 1.5, unit='x'),
    Target('save (outbox + confirms) / plain save, existing row', 'save_update_ratio', '<=', 1.5, unit='x'),
    Target('save (outbox + confirms) / plain save, 100 rows/txn', 'save_batch_ratio', '<=', 1.5, unit='x'),
    Target('cqrs_bulk_load', 'bulk_load', '>=', 20000, unit='rows/s'),
    Target('cqrs_bulk_dump', 'bulk_dump', '>=', 50000, unit='rows/s'),
    Target('cqrs_sync until applied', 'sync', '>=', 3000, unit='rows/s'),
    Target('consumer worker peak RSS (max over scenarios)', 'rss_max', '<=', 60, unit='MB'),
)


def evaluate_targets(rows: list[Row]) -> list[dict[str, Any]]:
    by_key = {r.key: r for r in rows}
    rss = [r.ours for r in rows if '_rss' in r.key]
    numeric = [v for v in rss if isinstance(v, (int, float))]
    if rss:
        by_key['rss_max'] = Row(
            'targets', 'rss_max', 'max RSS', 'MB', ours=max(numeric) if numeric else rss[0]
        )
    out = []
    for t in TARGETS:
        row = by_key.get(t.key)
        if row is None:
            continue
        value = getattr(row, t.column)
        entry: dict[str, Any] = {'target': t.name, 'required': f'{t.op} {_num(t.required)} {t.unit}'.strip()}
        if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
            entry.update(
                measured=value if value is not None else 'not run',
                status='FAILED'
                if isinstance(value, str) and value.startswith('FAILED')
                else 'missing'
                if isinstance(value, str) and value.startswith('missing')
                else 'not run',
                margin='',
            )
        else:
            met = value >= t.required if t.op == '>=' else value <= t.required
            factor = value / t.required if t.required else float('inf')
            if met:
                margin = f'{factor:.2f}x the target' if t.op == '>=' else f'{factor:.2f}x of the limit'
            elif t.op == '>=':
                margin = f'short by {100 * (1 - factor):.0f}% ({factor:.2f}x of the target)'
            else:
                margin = f'over by {100 * (factor - 1):.0f}% ({factor:.2f}x the limit)'
            entry.update(
                measured=f'{_num(value)} {t.unit}'.strip(),
                value=value,
                status='met' if met else 'missed',
                margin=margin,
            )
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# Formatting


def _num(value: float) -> str:
    if value == 0:
        return '0'
    magnitude = abs(value)
    if magnitude >= 1000:
        return f'{value:,.0f}'
    if magnitude >= 100:
        return f'{value:.0f}'
    if magnitude >= 10:
        return f'{value:.1f}'
    if magnitude >= 1:
        return f'{value:.2f}'
    return f'{value:.3f}'


def format_value(value: Any) -> str:
    if value is None:
        return '–'
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return 'n/a'
        return _num(value)
    text = str(value).replace('|', '/').replace('\n', ' ')
    if text.startswith('FAILED'):
        return '**FAILED**'
    if text.startswith('missing'):
        return 'missing'
    return text[:60]


def format_markdown(results: dict[str, Any]) -> str:
    """The result tables (Markdown) of a results dict as written to bench/results/*.json."""
    lines: list[str] = []
    meta = results.get('meta', {})
    machine, versions = meta.get('machine', {}), meta.get('versions', {})
    lines.append(
        f'Run `{meta.get("command", "")}` on {meta.get("started", "?")}, '
        f'{_num(meta.get("elapsed_s", 0) / 60)} min, {meta.get("runs", "?")} run(s) '
        f'(save overhead: {meta.get("save_runs", "?")}); medians, ratios paired per run.'
    )
    lines.append('')
    lines.append(
        f'Machine: {machine.get("nproc", "?")} cores, {machine.get("cpu", "?")}, '
        f'{machine.get("memory_gb", "?")} GB RAM, Linux {machine.get("kernel", "?")}; '
        f'load average {machine.get("loadavg_start", "?")} at start, '
        f'{machine.get("loadavg_end", "?")} at end.'
    )
    if versions:
        lines.append('')
        lines.append('Versions: ' + '; '.join(f'{k} {v}' for k, v in versions.items()) + '.')
    lines.append('')
    lines.append('| Scenario | Measure | Unit | ours | upstream 3.1.0 | raw ceiling / baseline |')
    lines.append('|---|---|---|---:|---:|---:|')
    last = None
    for row in results.get('rows', []):
        scenario = row['scenario'] if row['scenario'] != last else ''
        last = row['scenario']
        measure = row['measure'].strip()
        if row['measure'].startswith('  '):
            measure = '↳ ' + measure
        lines.append(
            f'| {scenario} | {measure} '
            f'| {row["unit"]} | {format_value(row.get("ours"))} | {format_value(row.get("upstream"))} '
            f'| {format_value(row.get("ceiling"))} |'
        )
    failures = [
        (row['key'], col, row[col])
        for row in results.get('rows', [])
        for col in ('ours', 'upstream', 'ceiling')
        if isinstance(row.get(col), str) and row[col].startswith(('FAILED', 'missing'))
    ]
    if failures:
        lines.append('')
        seen = set()
        for key, col, text in failures:
            if (col, text) in seen:
                continue
            seen.add((col, text))
            lines.append(f'* `{key}` ({col}): {text[:300]}')
    targets = results.get('targets', [])
    if targets:
        lines.append('')
        lines.append('| Target (ours) | Required | Measured | Status |')
        lines.append('|---|---|---:|---|')
        for t in targets:
            status = t['status'] + (f' — {t["margin"]}' if t.get('margin') else '')
            measured = (
                format_value(t['measured'])
                if not isinstance(t['measured'], str) or t['measured'].startswith(('FAILED', 'missing'))
                else t['measured']
            )
            lines.append(f'| {t["target"]} | {t["required"]} | {measured} | {status} |')
    return '\n'.join(lines) + '\n'


def update_readme(markdown: str, path: Path = README) -> None:
    """Replace the "Latest results" section of bench/README.md (between its markers) with ``markdown``."""
    text = path.read_text() if path.exists() else '# dj_cqrs benchmark\n\n## Latest results\n'
    block = f'{START_MARK}\n{markdown}{END_MARK}\n'
    if START_MARK in text and END_MARK in text:
        text = re.sub(
            re.escape(START_MARK) + '.*?' + re.escape(END_MARK) + '\n?', lambda _m: block, text, flags=re.S
        )
    elif '## Latest results' in text:
        text = re.sub(
            r'## Latest results\n.*?(?=^## |\Z)',
            lambda _m: f'## Latest results\n\n{block}\n',
            text,
            flags=re.S | re.M,
        )
    else:
        text = text.rstrip('\n') + f'\n\n## Latest results\n\n{block}'
    path.write_text(text)


# --------------------------------------------------------------------------------------------
# Machine and versions


def _sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return '?'


def machine_info() -> dict[str, Any]:
    cpu = '?'
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as fh:
        for line in fh:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    memory = '?'
    with contextlib.suppress(OSError), open('/proc/meminfo') as fh:
        for line in fh:
            if line.startswith('MemTotal:'):
                memory = f'{int(line.split()[1]) / 1024 / 1024:.1f}'
    return {
        'nproc': os.cpu_count(),
        'cpu': cpu,
        'memory_gb': memory,
        'kernel': platform.release(),
        'loadavg_start': ' '.join(f'{x:.2f}' for x in os.getloadavg()),
    }


VERSION_SNIPPET = (
    'import json, sys, django, pika, importlib.metadata as m; '
    "print(json.dumps({'python': sys.version.split()[0], 'django': django.__version__, "
    "'pika': pika.__version__, 'cqrs': m.version('django-cqrs')}))"
)


def versions(stacks: dict[str, common.Stack]) -> dict[str, str]:
    out: dict[str, str] = {}
    for runtime in RUNTIMES:
        with contextlib.suppress(Exception):
            info = json.loads(_sh(str(common.python_for(runtime)), '-c', VERSION_SNIPPET))
            label = 'ours' if runtime == 'ours' else 'upstream'
            out[f'{label}: Python'] = info['python']
            out[f'{label}: Django'] = info['django']
            out[f'{label}: pika'] = info['pika']
            out[f'{label}: django-cqrs'] = info['cqrs']
    commit = _sh('git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD')
    dirty = _sh('git', '-C', str(REPO), 'status', '--porcelain', '--', 'src')
    out['dj_cqrs commit'] = commit + (' + uncommitted changes in src/' if dirty else '')
    with contextlib.suppress(Exception), common.pg('postgres') as conn:
        out['PostgreSQL'] = conn.execute('SHOW server_version').fetchone()[0].split()[0]
    out['RabbitMQ'] = _sh('rabbitmqctl', '-q', 'version') or '?'
    return out


# --------------------------------------------------------------------------------------------
# The run


class Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        print(f'[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {text}', file=sys.stderr, flush=True)


def attempt(
    log: Progress, what: str, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Run one measurement; a failure becomes ``{'failed': reason}`` and the bench goes on."""
    try:
        result = fn(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = f'{type(exc).__name__}: {exc}'
        log(f'  {what}: FAILED {reason.splitlines()[0][:200]}')
        detail = traceback.format_exc()
        with contextlib.suppress(Exception), (FAILURE_LOG[0]).open('a') as fh:
            fh.write(f'--- {what}\n{detail}\n')
        return {'failed': reason[:1500]}
    brief = {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in result.items()
        if not isinstance(v, (dict, list))
    }
    log(f'  {what}: {json.dumps(brief)[:400]}')
    return result


@contextlib.contextmanager
def session_or_failure(log: Progress, stack: common.Stack, workers: int, label: str) -> Iterator[Any]:
    """A consumer session; None when the consumer cannot even start (its measures then fail)."""
    try:
        cm = stack.consuming(workers, label=label)
        session = cm.__enter__()
    except Exception as exc:
        log(f'  {stack.runtime} consumer -w {workers}: cannot start: {exc}')
        yield None
        return
    try:
        yield session
    finally:
        cm.__exit__(None, None, None)


class Bench:
    """One bench run: the resources, the samples, and the order of the measurements."""

    def __init__(self, cfg: Config, samples: Samples, log: Progress, res: common.Resources) -> None:
        self.cfg, self.samples, self.log, self.res = cfg, samples, log, res
        self.wanted = set(cfg.scenarios)
        self.stacks: dict[str, common.Stack] = {}

    def record(
        self,
        scenario: str,
        variant: str,
        runtime: str,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> dict[str, Any]:
        result = attempt(self.log, what, fn, *args, **kwargs)
        self.samples.add(scenario, variant, runtime, result)
        return result

    @staticmethod
    def order(run: int) -> tuple[str, ...]:
        """Which package goes first alternates between runs (drift cancels out of the pairs)."""
        return RUNTIMES if run % 2 == 0 else RUNTIMES[::-1]

    def save(self) -> None:
        self.log('scenario 1: save overhead')
        for rt in RUNTIMES:
            save_overhead.warm_up(self.stacks[rt])
        for run in range(self.cfg.save_runs):
            for rt in self.order(run):
                self.record(
                    'save',
                    'default',
                    rt,
                    f'save {rt} run {run + 1}',
                    save_overhead.measure,
                    self.res,
                    self.stacks[rt],
                    self.cfg.save_block,
                )

    def raw_publish(self) -> None:
        ns = self.stacks['ours'].ns
        for variant, confirms, n in (
            ('publish_none', 'none', self.cfg.raw_publish),
            ('publish_pipelined', 'pipelined', self.cfg.raw_publish),
            ('publish_blocking', 'blocking', self.cfg.raw_blocking),
        ):
            self.record(
                'raw',
                variant,
                'raw',
                f'raw {variant}',
                common.run_raw,
                'publish',
                vhost=ns.vhost,
                exchange=f'{self.res.token}_raw_x',
                queue=f'{self.res.token}_raw_q',
                n=n,
                confirms=confirms,
            )

    def session(self, rt: str, workers: int, run: int) -> None:
        """One ``cqrs_consume -w N`` of one package, shared by the scenarios that need it running."""
        cfg, stack = self.cfg, self.stacks[rt]
        planned: list[tuple[str, str, Callable[..., Any], tuple[Any, ...]]] = []
        if 'e2e' in self.wanted:
            for per_txn in (1, 100):
                planned.append(
                    (
                        'e2e',
                        f'w{workers}_r{per_txn}',
                        throughput.measure,
                        (per_txn, cfg.e2e_duration, cfg.e2e_cap),
                    )
                )
        if workers == 1:
            if 'latency' in self.wanted:
                planned.append(
                    ('latency', 'default', latency.measure, (cfg.latency_rate, cfg.latency_duration))
                )
            if 'coalesce' in self.wanted:
                planned.append(
                    ('coalesce', 'default', coalescing.measure, (cfg.coalesce_rows, cfg.coalesce_rounds))
                )
            if 'sync' in self.wanted:
                planned.append(('sync', 'default', sync.measure, (cfg.sync_rows,)))
        if not planned:
            return
        self.log(f'{rt}: cqrs_consume -w {workers}')
        with session_or_failure(self.log, stack, workers, f'consumer-w{workers}-run{run + 1}') as session:
            if session is not None:
                attempt(
                    self.log,
                    f'warm-up {rt} -w {workers}',
                    warm_up,
                    self.res,
                    stack,
                    session,
                    cfg.warmup_events,
                )
            for scenario, variant, fn, args in planned:
                if session is None:
                    self.samples.add(scenario, variant, rt, {'failed': 'consumer did not start'})
                else:
                    self.record(
                        scenario,
                        variant,
                        rt,
                        f'{scenario} {variant} {rt}',
                        fn,
                        self.res,
                        stack,
                        session,
                        *args,
                    )

    def drain(self) -> None:
        cfg, ours = self.cfg, self.stacks['ours']
        self.log(f'scenario 3: drain {cfg.drain_events} events')
        pre = attempt(self.log, 'prefill', drain.prefill, self.res, ours, cfg.drain_events)
        if 'failed' in pre:
            for rt, cma in drain.VARIANTS:
                self.samples.add('drain', f'cma{cma}', rt, {'failed': f'prefill failed: {pre["failed"]}'})
            self.samples.add('raw', 'consume_upsert', 'raw', pre)
            return
        queues = pre['queues']
        if 'drain' in self.wanted:
            for rt, cma in drain.VARIANTS:
                self.record(
                    'drain',
                    f'cma{cma}',
                    rt,
                    f'drain {rt} CONN_MAX_AGE={cma}',
                    drain.drain_one,
                    self.res,
                    self.stacks[rt],
                    ours.master_db,
                    queues[f'{rt}_{cma}'],
                    cfg.drain_events,
                    cma,
                    cfg.drain_window,
                )
        self.record(
            'raw',
            'consume_upsert',
            'raw',
            'raw consume + upsert',
            drain.drain_raw,
            self.res,
            ours.master_db,
            queues['raw'],
            cfg.drain_events,
        )
        self.record(
            'raw',
            'upsert_sql',
            'raw',
            'raw one-transaction upsert',
            drain.upsert_raw,
            self.res,
            ours.master_db,
        )

    def bulk(self, logs: Path) -> None:
        self.log(f'scenario 6: bulk dump/load {self.cfg.bulk_rows} rows')
        out = attempt(self.log, 'bulk', bulk.measure, self.res, self.stacks, self.cfg.bulk_rows, logs)
        for rt in RUNTIMES:
            self.samples.add('bulk', 'default', rt, out if 'failed' in out else out.get(rt, {}))

    def run(self, logs: Path) -> dict[str, Any]:
        self.log(f'creating databases, migrating, starting agents (token {self.res.token})')
        self.stacks = {rt: self.res.stack(rt) for rt in RUNTIMES}
        meta: dict[str, Any] = {'versions': versions(self.stacks)}
        if 'save' in self.wanted:
            self.save()
        for run in range(self.cfg.runs):
            self.log(f'--- run {run + 1} of {self.cfg.runs}')
            if self.wanted & {'raw', 'save'}:
                self.raw_publish()
            for rt in self.order(run):
                for workers in (1, 2):
                    self.session(rt, workers, run)
            if self.wanted & {'drain', 'raw', 'bulk'}:
                self.drain()
            if 'bulk' in self.wanted:
                self.bulk(logs)
        return meta


def warm_up(
    res: common.Resources, stack: common.Stack, session: common.Session, events: int
) -> dict[str, Any]:
    throughput.warm_up(res, stack, session, events)
    return {'events': events}


def run_bench(cfg: Config, samples: Samples, log: Progress, logs: Path) -> dict[str, Any]:
    with common.Resources(logs) as res:
        return Bench(cfg, samples, log, res).run(logs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    for runtime in RUNTIMES:
        if not common.python_for(runtime).exists():
            print(
                f'no Python for {runtime} at {common.python_for(runtime)} (run scripts/upstream-venv)',
                file=sys.stderr,
            )
            return 2
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    logs = common.ARTIFACTS / stamp
    logs.mkdir(parents=True, exist_ok=True)
    FAILURE_LOG[0] = logs / 'failures.log'
    log = Progress()
    command = '.venv/bin/python bench/run.py' + (
        ' ' + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ''
    )
    machine = machine_info()
    samples = Samples()
    meta = run_bench(cfg, samples, log, logs)
    machine['loadavg_end'] = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    rows = build_rows(samples, cfg)
    results = {
        'meta': {
            'command': command.strip(),
            'started': started.isoformat(timespec='seconds'),
            'elapsed_s': round(log_elapsed(log), 1),
            'runs': cfg.runs,
            'save_runs': cfg.save_runs,
            'config': asdict(cfg),
            'machine': machine,
            'logs': str(logs.relative_to(REPO)),
            **meta,
        },
        'rows': [asdict(r) for r in rows],
        'targets': evaluate_targets(rows),
        'samples': samples.data,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f'{stamp}{"-quick" if cfg.quick else ""}.json'
    out.write_text(json.dumps(results, indent=1, default=str) + '\n')
    markdown = format_markdown(results)
    print(markdown)
    if not args.no_readme:
        update_readme(markdown)
    log(f'results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}')
    return 0


def log_elapsed(log: Progress) -> float:
    return time.monotonic() - log.t0


if __name__ == '__main__':
    sys.exit(main())
