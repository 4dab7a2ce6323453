"""The replica race behind the soak's "revision went back" (docs/reliability.md, bug 1), in isolation.

Two consumer workers: one creates a row at revision 1, the other's batch holds an older event of
the same (then absent) row. The bulk lane of ``dj_cqrs.replica.apply`` reads the row before the
first worker commits, waits on the absent-row lock, and then upserts without reading again, so
the older revision overwrites the newer one. Deterministic, a few seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.crash.stack import with_src
from tests.e2e import harness
from tests.support import services

pytestmark = pytest.mark.crash

SCRIPT = Path(__file__).parent / 'scripts' / 'bulk_lane_race.py'


def test_bulk_lane_never_overwrites_a_row_created_concurrently() -> None:
    broker = harness.Broker('unused', '/', 'amqp://guest:guest@127.0.0.1:1/%2F', 'x', 'q', True)
    with services.pg_database('crash_race') as db:
        env = harness.project_env(harness.REPLICA_PROJECT, db, broker, {'CQRS_E2E_LOG_LEVEL': 'WARNING'})
        env = with_src(env)
        proc = subprocess.run(
            [str(harness.python_for('ours')), str(SCRIPT)],
            cwd=harness.REPLICA_PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'an older revision overwrote a newer one on the replica:\n{output}'
