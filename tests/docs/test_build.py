"""``mkdocs build --strict`` passes: nav, links and anchors are all valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import REPO


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip('mkdocs', reason="mkdocs is in the 'docs' and 'test' extras")
    result = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(tmp_path / 'site')],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ('index.html', 'settings/index.html', 'commands/index.html', 'compatibility/index.html'):
        assert (tmp_path / 'site' / page).exists(), page
    assert 'Latest results' in (tmp_path / 'site' / 'benchmarks' / 'index.html').read_text()
