"""Fixtures of the crash matrix (tests/crash/test_crash_matrix.py).

``stack`` is module-scoped and parametrised over the outbox mode, so every mode builds its stack
once and runs every case on it (pytest groups the tests by parameter). ``case`` gives each test a
:class:`tests.crash.stack.Case` and files its report; the session prints the matrix at the end and
writes it to ``.artifacts/crash/results.json``.

Teardown always runs, even on failure: the case's processes, then (per mode) the consumer, the
proxies, the vhost and both databases.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.crash import stack as crash

RESULTS: list[dict[str, Any]] = []


@pytest.fixture(scope='module', params=list(crash.MODES))
def stack(request: pytest.FixtureRequest) -> Iterator[crash.Stack]:
    with crash.run_stack(request.param) as running:
        yield running


@pytest.fixture
def case(request: pytest.FixtureRequest, stack: crash.Stack) -> Iterator[crash.Case]:
    stack.heal()
    stack.ensure_consumer()
    name = request.node.originalname.removeprefix('test_')
    running = crash.Case(stack, name)
    try:
        yield running
    finally:
        running.close()
        stack.heal()
        if running.report.seconds:
            RESULTS.append(running.report.as_dict())
            print('\n' + running.report.line())


@pytest.fixture(autouse=True)
def _reset_replica_stores() -> Iterator[None]:
    """Overrides the in-process suite's autouse fixture (tests/conftest.py): these tests do not
    configure Django in the pytest process."""
    yield


COLUMNS = [
    ('written', 'written'),
    ('published', 'published'),
    ('publish_failures', 'failed publishes'),
    ('duplicates', 'duplicates'),
    ('stale_skipped', 'stale skipped'),
    ('dropped', 'events dropped'),
    ('lost', 'rows lost'),
]


def matrix(results: list[dict[str, Any]]) -> str:
    head = '| case | mode | ' + ' | '.join(title for _, title in COLUMNS) + ' | time |'
    lines = [head, '|' + '---|' * (len(COLUMNS) + 3)]
    for r in results:
        values = ' | '.join(str(r[key]) for key, _ in COLUMNS)
        lines.append(f'| {r["case"]} | {r["mode"]} | {values} | {r["seconds"]:.0f} s |')
    return '\n'.join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    crash.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (crash.ARTIFACTS / 'results.json').write_text(json.dumps(RESULTS, indent=2, default=str))
    (crash.ARTIFACTS / 'results.md').write_text(matrix(RESULTS) + '\n')
    terminalreporter.write_sep('=', 'crash matrix')
    terminalreporter.write_line(matrix(RESULTS))
    for r in RESULTS:
        for note in r.get('notes') or []:
            terminalreporter.write_line(f'{r["case"]} [{r["mode"]}]: {note}')
