"""bench/run.py still imports, parses its arguments and formats its tables (nothing is measured)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / 'bench' / 'run.py'


@pytest.fixture(scope='module')
def bench_run():
    spec = importlib.util.spec_from_file_location('bench_run_under_test', RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_argument_parser(bench_run):
    parse = bench_run.build_parser().parse_args
    cfg = bench_run.config_from_args(parse([]))
    assert (cfg.runs, cfg.quick, cfg.drain_events) == (3, False, 10_000)
    assert cfg.save_runs >= 5
    assert cfg.scenarios == bench_run.SCENARIOS

    quick = bench_run.config_from_args(parse(['--quick', '--runs', '2', '--only', 'drain,latency']))
    assert quick.quick and quick.runs == 2 and quick.scenarios == ('drain', 'latency')
    assert quick.drain_events < cfg.drain_events

    for bad in (['--runs', '0'], ['--only', 'nope'], ['--bogus']):
        with pytest.raises(SystemExit):
            parse(bad)


def test_result_table_formatter(bench_run, tmp_path):
    samples = bench_run.Samples()
    for run in range(3):
        samples.add('drain', 'cma0', 'ours', {'rate': 6000.0 + run, 'worker_peak_rss_mb': 50.0})
        samples.add('drain', 'cma0', 'upstream', {'rate': 200.0, 'worker_peak_rss_mb': 58.0})
        samples.add(
            'save', 'default', 'ours', {'create_bench_ms': 1.2, 'create_plain_ms': 1.0, 'create_ratio': 1.2}
        )
        samples.add('latency', 'default', 'ours', {'failed': 'NotConverged: nothing moved'})
        samples.add('sync', 'default', 'ours', {'missing': 'cqrs_sync is not a command of this package'})
    rows = bench_run.build_rows(samples, bench_run.Config())
    results = {
        'meta': {'command': '.venv/bin/python bench/run.py', 'runs': 3, 'machine': {'nproc': 2}},
        'rows': [asdict(r) for r in rows],
        'targets': bench_run.evaluate_targets(rows),
    }
    markdown = bench_run.format_markdown(results)

    drain = next(line for line in markdown.splitlines() if line.startswith('| drain |'))
    assert '| 6,001 | 200 |' in drain  # medians of the runs
    assert '30.0' in markdown  # ours / upstream, paired per run
    assert '**FAILED**' in markdown and 'NotConverged: nothing moved' in markdown
    assert 'missing' in markdown

    targets = {t['target']: t for t in results['targets']}
    assert targets['replica drain, 1 worker (CONN_MAX_AGE=0)']['status'] == 'met'
    assert targets['drain vs upstream (CONN_MAX_AGE=0)']['status'] == 'met'
    assert targets['latency p50 at 50 writes/s']['status'] == 'FAILED'
    assert targets['cqrs_sync until applied']['status'] == 'missing'
    assert targets['save (outbox + confirms) / plain save, new row']['status'] == 'met'

    readme = tmp_path / 'README.md'
    readme.write_text('# bench\n\n## Latest results\n\nold\n\n## Other\n')
    bench_run.update_readme(markdown, readme)
    bench_run.update_readme(markdown, readme)  # idempotent: the section is replaced, not appended
    text = readme.read_text()
    assert text.count(bench_run.START_MARK) == 1 and '## Other' in text and '| drain |' in text
    assert 'old' not in text
