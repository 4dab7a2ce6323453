"""The demo (``bash scripts/demo``) started as a subprocess, as a person would run it."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / '.artifacts' / 'demo'
START_TIMEOUT = 120.0


@dataclass
class RunningDemo:
    master: str
    replica: str
    state: Path
    pids: dict[str, int]
    launcher: subprocess.Popen[bytes]

    def log(self, name: str, lines: int = 40) -> str:
        try:
            text = (self.state / 'logs' / f'{name}.log').read_text(errors='replace').splitlines()
        except OSError:
            return f'<no {name} log>'
        return '\n'.join(text[-lines:])

    def logs(self) -> str:
        names = ('consumer', 'relay', 'master', 'replica', 'setup-master', 'setup-replica')
        return '\n'.join(f'--- {name}.log ---\n{self.log(name)}' for name in names)

    def state_json(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.replica + 'api/state.json', timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def wait_replica(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                last = self.state_json()
                if predicate(last):
                    return last
            time.sleep(0.3)
        raise AssertionError(f'the replica did not converge; last state: {last}\n{self.logs()}')


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        return Path(f'/proc/{pid}/stat').read_text().split(') ', 1)[1][0] != 'Z'
    except (OSError, IndexError):
        return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(
        process_alive(int(p.name))
        for p in Path('/proc').iterdir()
        if p.name.isdigit() and _pgid(int(p.name)) == pgid
    )


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def start_demo(tmp_path: Path, name: str, env: dict[str, str] | None = None) -> Iterator[RunningDemo]:
    state = tmp_path / 'state'
    ready = tmp_path / 'ready.json'
    out = open(tmp_path / 'launcher.log', 'wb')  # noqa: SIM115
    launcher = subprocess.Popen(
        [
            'bash',
            str(REPO / 'scripts' / 'demo'),
            '--state',
            str(state),
            '--master-port',
            '0',
            '--replica-port',
            '0',
            '--ready-file',
            str(ready),
        ],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    demo: RunningDemo | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f'the demo did not start (exit {launcher.poll()}):\n{(tmp_path / "launcher.log").read_text()}'
                )
            time.sleep(0.2)
        info = json.loads(ready.read_text())
        demo = RunningDemo(info['master'], info['replica'], state, info['pids'], launcher)
        yield demo
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
        out.close()
        target = ARTIFACTS / 'logs' / name
        shutil.rmtree(target, ignore_errors=True)
        if (state / 'logs').exists():
            shutil.copytree(state / 'logs', target)
        shutil.copy(tmp_path / 'launcher.log', target / 'launcher.log') if target.exists() else None
        if demo is not None:
            for pid in demo.pids.values():  # nothing is left behind, even if a test failed
                if group_alive(pid):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def demo(tmp_path: Path, request: Any) -> Iterator[RunningDemo]:
    with start_demo(tmp_path, request.node.name) as running:
        yield running


class Client:
    """A minimal browserless client for the master's forms (cookies and the CSRF token)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path.lstrip('/'), timeout=10) as response:
            return response.read().decode()  # type: ignore[no-any-return]

    def post(self, form_page: str, action: str, fields: dict[str, str]) -> str:
        page = self.get(form_page)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        data = urllib.parse.urlencode({'csrfmiddlewaretoken': token.group(1), **fields}).encode()
        with self.opener.open(self.base + action.lstrip('/'), data=data, timeout=10) as response:
            return response.read().decode()  # type: ignore[no-any-return]
