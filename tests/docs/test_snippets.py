"""Every code snippet of docs/ runs (conventions: docs/contributing.md, tests/docs/snippets.py).

Settings snippets are executed here, in-process, and their ``CQRS`` must pass the dj_cqrs system
checks. Every other ``<!-- run -->`` snippet of a page runs in the docs sandbox project, in a
subprocess per page (tests/docs/runner.py), so that the models a page defines stay its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import override_settings

from dj_cqrs import checks
from dj_cqrs.registry import ReplicaRegistry
from tests.docs.snippets import REPO, Snippet, all_snippets

SNIPPETS = all_snippets()
RUNNABLE_PAGES = sorted({s.page for s in SNIPPETS if s.action == 'run' and s.option != 'settings'})
SETTINGS = [s for s in SNIPPETS if s.action == 'run' and s.option == 'settings']


def test_the_docs_have_snippets() -> None:
    assert len(RUNNABLE_PAGES) >= 5 and len(SETTINGS) >= 5


def test_every_snippet_says_whether_it_runs() -> None:
    unmarked = [
        s.where for s in SNIPPETS if s.action is None and (s.is_python or (s.is_shell and s.has_manage_py))
    ]
    assert not unmarked, f'add <!-- run --> (or <!-- norun: why -->) above: {unmarked}'
    no_reason = [s.where for s in SNIPPETS if s.action == 'norun' and not s.option]
    assert not no_reason, f'<!-- norun: ... --> needs a reason: {no_reason}'
    unknown = [s.where for s in SNIPPETS if s.action == 'run' and s.option not in ('', 'settings', 'output')]
    assert not unknown, f'unknown run option: {unknown}'
    wrong = [s.where for s in SETTINGS if not s.is_python] + [
        s.where for s in SNIPPETS if s.option == 'output' and not s.is_shell
    ]
    assert not wrong, f'run: settings is for python blocks, run: output for shell blocks: {wrong}'


@pytest.mark.parametrize('page', RUNNABLE_PAGES)
def test_page_snippets_run(page: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('DJANGO_', 'PYTEST_'))}
    env['PYTHONPATH'] = str(REPO)
    result = subprocess.run(
        [sys.executable, '-m', 'tests.docs.runner', f'docs/{page}'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f'{result.stdout}\n{result.stderr}'


@pytest.mark.parametrize('snippet', SETTINGS, ids=lambda s: s.where)
def test_settings_snippet_passes_the_checks(snippet: Snippet, monkeypatch: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(snippet.code, snippet.where, 'exec'), namespace)
    if 'CQRS' not in namespace:
        return  # another setting (INSTALLED_APPS ...): it only has to be valid Python
    if not namespace['CQRS'].get('queue'):
        # A dict without a queue is a master service's: it has no replica models.
        monkeypatch.setattr(ReplicaRegistry, 'models', {})
    with override_settings(CQRS=namespace['CQRS']):
        messages = checks.check_settings()
    assert not messages, [f'{m.id}: {m.msg}' for m in messages]
