"""The demo end to end without a browser: forms on the master, the replica's JSON, clean shutdown.

Runs the one-command launcher (``bash scripts/demo``) on the embedded broker and on RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.demo.conftest import REPO, Client, RunningDemo, group_alive, start_demo
from tests.support import services

pytestmark = pytest.mark.e2e


def _item(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((i for i in state['items'] if i['name'] == name), None)


def _model(state: dict[str, Any], cqrs_id: str) -> dict[str, Any]:
    return next(m for m in state['broker']['models'] if m['cqrs_id'] == cqrs_id)


def _exercise(demo: RunningDemo) -> None:
    # The seeded catalog is replicated first.
    demo.wait_replica(lambda s: len(s['items']) == 3 and len(s['categories']) == 2)
    master = Client(demo.master)
    page = master.post('/', '/categories/', {'name': 'Gadgets'})
    assert 'Created category “Gadgets”' in page
    category = demo.wait_replica(lambda s: any(c['name'] == 'Gadgets' for c in s['categories']))
    gadgets = next(c for c in category['categories'] if c['name'] == 'Gadgets')

    fields = {
        'name': 'Milk frother',
        'category': str(gadgets['id']),
        'price': '24.50',
        'in_stock': 'on',
        'available_from': '2030-01-02T03:04',
    }
    page = master.post('/', '/', fields)
    assert 'Created “Milk frother” (revision 0)' in page
    state = demo.wait_replica(lambda s: _item(s, 'Milk frother'))
    item = _item(state, 'Milk frother')
    assert item is not None
    assert (item['price'], item['in_stock'], item['category'], item['cqrs_revision']) == (
        '24.50',
        True,
        'Gadgets',
        0,
    )
    assert item['available_from'].startswith('2030-01-02T03:04')
    assert item['received_at'] >= item['cqrs_updated'][:19], 'arrival is recorded by the replica hook'

    edit = f'/items/{item["id"]}/'
    page = master.post(edit, edit, {**fields, 'price': '19.99', 'in_stock': ''})
    assert 'Saved “Milk frother” (revision 1)' in page
    state = demo.wait_replica(lambda s: (i := _item(s, 'Milk frother')) and i['cqrs_revision'] == 1)
    item = _item(state, 'Milk frother')
    assert item is not None and (item['price'], item['in_stock']) == ('19.99', False)

    master.post('/', f'/items/{item["id"]}/delete/', {})
    state = demo.wait_replica(lambda s: _item(s, 'Milk frother') is None)
    # The pipeline panel's data: counted by the replica's signal receivers and read from the broker.
    assert state['counters']['applied']['value'] >= 8
    assert 'skipped' not in state['counters'], 'no duplicates: the seed flushed its delivered outbox rows'
    assert state['broker']['error'] is None
    assert state['broker']['dead_letters']['messages'] == 0
    # (The broker and master parts are cached for a moment by the page.)
    state = demo.wait_replica(lambda s: s['master']['reachable'] and s['master']['outbox']['count'] == 0)
    state = demo.wait_replica(lambda s: _model(s, 'item')['deletes'] == 1)
    assert _model(state, 'item')['rows'] == 3
    assert _model(state, 'item')['last_revision'] == 0

    status = subprocess.run(
        [sys.executable, str(REPO / 'examples/demo/replica/manage.py'), 'cqrs_status', '--replica'],
        env={
            **os.environ,
            'CQRS_DEMO_STATE': str(demo.state),
            'DJANGO_SETTINGS_MODULE': 'demo_replica.settings',
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert 'queue demo_replica: 0 ready' in status.stdout
    assert 'item: 3 row(s)' in status.stdout


def _stopped_cleanly(demo: RunningDemo, sig: int = signal.SIGTERM) -> None:
    demo.launcher.send_signal(sig)
    assert demo.launcher.wait(timeout=30) == 0
    time.sleep(0.2)
    left = {name: pid for name, pid in demo.pids.items() if group_alive(pid)}
    assert not left, f'processes left running: {left}'


def test_demo_on_the_embedded_broker(tmp_path: Path) -> None:
    with start_demo(tmp_path, 'embedded') as demo:
        _exercise(demo)
        _stopped_cleanly(demo)


def test_demo_on_rabbitmq(tmp_path: Path) -> None:
    with services.rabbit_vhost('cqrs_demo') as vhost:
        env = {'CQRS_DEMO_URL': services.amqp_url(vhost)}
        with start_demo(tmp_path, 'rabbitmq', env=env) as demo:
            state = demo.wait_replica(
                lambda s: s['broker']['queue'] and s['broker']['queue']['consumers'] == 1
            )
            assert state['broker']['delay_queues'][0]['name'] == 'demo_replica.delay.1000'
            _exercise(demo)
            _stopped_cleanly(demo)


def test_demo_restarts_on_its_state_and_dies_with_its_launcher(tmp_path: Path) -> None:
    with start_demo(tmp_path, 'restart') as demo:
        demo.wait_replica(lambda s: len(s['items']) == 3)
        _stopped_cleanly(demo, signal.SIGINT)  # Ctrl-C
    (tmp_path / 'ready.json').unlink()
    with start_demo(tmp_path, 'restart') as demo:
        state = demo.wait_replica(lambda s: len(s['items']) == 3)
        assert 'skipped' not in state['counters'], 'not seeded twice'
        # A launcher killed without its cleanup still takes its children along (PR_SET_PDEATHSIG).
        os.kill(demo.launcher.pid, signal.SIGKILL)
        demo.launcher.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(group_alive(pid) for pid in demo.pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [n for n, pid in demo.pids.items() if group_alive(pid)]
