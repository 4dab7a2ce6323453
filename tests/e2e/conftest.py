"""Fixtures of the end-to-end tests.

The tests never configure Django in the pytest process: both projects run as subprocesses (see
harness.py). ``stack`` is module-scoped and parametrised over who runs the master and who runs
the replica; pytest groups the tests of a module by parameter, so every module builds each stack
once.

Environment:
  CQRS_E2E_SELFCHECK=1   also run upstream->upstream (the harness self-check)
  CQRS_E2E_COMBOS=a-b,.. only these combinations (e.g. ``ours-ours,upstream-ours``)
  CQRS_E2E_TIMEOUT=30    seconds to wait for a replica to converge
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e import harness

collect_ignore = ['projects']

COMBOS = [('ours', 'ours'), ('upstream', 'ours'), ('ours', 'upstream'), ('upstream', 'upstream')]


def _selected(master: str, replica: str) -> bool:
    wanted = os.environ.get('CQRS_E2E_COMBOS', '').strip()
    return not wanted or f'{master}-{replica}' in {w.strip() for w in wanted.split(',')}


def _param(master: str, replica: str):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.e2e]
    if 'upstream' in (master, replica):
        marks.append(pytest.mark.interop)
    if master == replica == 'upstream':
        marks.append(
            pytest.mark.skipif(
                os.environ.get('CQRS_E2E_SELFCHECK') != '1',
                reason='harness self-check against upstream only; set CQRS_E2E_SELFCHECK=1',
            )
        )
    if not _selected(master, replica):
        marks.append(pytest.mark.skip(reason='not in CQRS_E2E_COMBOS'))
    return pytest.param((master, replica), id=f'{master}-{replica}', marks=marks)


@pytest.fixture(scope='module', params=[_param(m, r) for m, r in COMBOS])
def stack(request: pytest.FixtureRequest) -> Iterator[harness.Stack]:
    master, replica = request.param
    label = request.module.__name__.rsplit('.', 1)[-1]
    with harness.run_stack(master, replica, label) as running:
        yield running


@pytest.fixture
def upstream_master(stack: harness.Stack) -> bool:
    return stack.master_runtime == 'upstream'


@pytest.fixture(autouse=True)
def _reset_replica_stores() -> Iterator[None]:
    """Overrides the in-process suite's autouse fixture (tests/conftest.py): the e2e tests do not
    configure Django in the pytest process, so they must not import the in-process test app."""
    yield
