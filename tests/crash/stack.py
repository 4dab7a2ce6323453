"""The crash tests' stack: the e2e master and replica projects, with TCP proxies in front of RabbitMQ.

One stack per outbox mode (``outbox``: ``CQRS_OUTBOX`` on, the default; ``no-outbox``: off, the
upstream behaviour where a failed publish is logged and dropped):

* a vhost of its own and two fresh PostgreSQL databases (tests/e2e/harness building blocks);
* proxy ``master`` between every master process and RabbitMQ, proxy ``replica`` between the
  consumer and RabbitMQ (tests/crash/proxy.py), so links can be cut without touching the broker;
* ``manage.py cqrs_consume -w 2`` for the replica (restartable: a case may SIGKILL it);
* master processes (``manage.py e2e_agent``, ``manage.py cqrs_relay``) started per case.

The replica's and the master's tables are read straight from PostgreSQL (psycopg), so a check
never depends on a process that a case has just killed.

A :class:`Case` measures one case: its rows are those created after it started (pks come from the
master's sequence), its counts come from the logs written while it ran, and a
:class:`RevisionSampler` watches the replica's revisions the whole time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.crash.proxy import TcpProxy
from tests.e2e import harness
from tests.support import services

MODES = ('outbox', 'no-outbox')
ARTIFACTS = harness.REPO / '.artifacts' / 'crash'
MASTER_TABLE = 'master_app_mymastermodel'
REPLICA_TABLE = 'replica_app_myreplicamodel'
MASTER_MODEL = 'MyMasterModel'
FIELD = 'my_field'
WORKERS = 2

# Log lines counted by the reports (what the master and the consumer log, UPSTREAM_SPEC §10.2).
PUBLISHED = 'CQRS is published'
PUBLISH_FAILED = "CQRS couldn't be published"
KEPT = 'kept in the outbox for the relay'
DUPLICATE = 'Received duplicate CQRS data'
STALE = (
    'Wrong CQRS sync order',
    'Stale CQRS sync skipped',
    'CQRS event for a deleted row skipped',
    'Stale CQRS delete skipped',
)
RECEIVED = 'CQRS is received'


def pg(dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=services.PG_HOST, port=services.PG_PORT, user='postgres', dbname=dbname, autocommit=True
    )


def count_lines(path: Path, needles: str | tuple[str, ...], offset: int = 0) -> int:
    needles = (needles,) if isinstance(needles, str) else needles
    try:
        with path.open('rb') as fh:
            fh.seek(offset)
            data = fh.read().decode(errors='replace')
    except OSError:
        return 0
    return sum(1 for line in data.splitlines() if any(n in line for n in needles))


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def with_src(env: dict[str, str]) -> dict[str, str]:
    """``CQRS_CRASH_SRC=<dir>`` runs every process on another copy of dj_cqrs (e.g. one with a
    proposed fix) without touching the working tree: PYTHONPATH wins over the editable install."""
    src = os.environ.get('CQRS_CRASH_SRC')
    if src:
        env['PYTHONPATH'] = f'{src}{os.pathsep}{env["PYTHONPATH"]}'
    return env


# --------------------------------------------------------------------------------------------
# Reading both databases


class Tables:
    """Direct reads of the master's and the replica's tables (one connection each, per thread)."""

    def __init__(self, master_db: str, replica_db: str) -> None:
        self.master_db, self.replica_db = master_db, replica_db
        self._local = threading.local()

    def _conn(self, which: str) -> Any:
        conn = getattr(self._local, which, None)
        if conn is None or conn.closed:
            conn = pg(self.master_db if which == 'master' else self.replica_db)
            setattr(self._local, which, conn)
        return conn

    def close(self) -> None:
        for which in ('master', 'replica'):
            conn = getattr(self._local, which, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def query(self, which: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn(which).cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def rows(self, which: str, above: int = 0) -> dict[int, dict[str, Any]]:
        """Every row with ``id > above``, all columns, by pk."""
        table = MASTER_TABLE if which == 'master' else REPLICA_TABLE
        with self._conn(which).cursor() as cur:
            cur.execute(f'SELECT * FROM {table} WHERE id > %s ORDER BY id', (above,))
            names = [d.name for d in cur.description]
            return {row[0]: dict(zip(names, row)) for row in cur.fetchall()}

    def revisions(self, above: int = 0) -> dict[int, int]:
        return dict(
            self.query('replica', f'SELECT id, cqrs_revision FROM {REPLICA_TABLE} WHERE id > %s', (above,))
        )

    def sequence(self, table: str, column: str = 'id') -> int:
        """The last value handed out by the sequence of ``table.column`` (0 if none yet)."""
        [(seq,)] = self.query('master', 'SELECT pg_get_serial_sequence(%s, %s)', (table, column))
        [(last, called)] = self.query('master', f'SELECT last_value, is_called FROM {seq}')
        return int(last) if called else 0

    def outbox_backlog(self) -> int:
        return int(self.query('master', 'SELECT count(*) FROM dj_cqrs_outbox')[0][0])


def diff_rows(
    master: dict[int, dict[str, Any]], replica: dict[int, dict[str, Any]]
) -> dict[int, tuple[Any, Any]]:
    """pk -> (master row, replica row) for every row that differs (None: absent)."""
    out = {}
    for pk in sorted(set(master) | set(replica)):
        if master.get(pk) != replica.get(pk):
            out[pk] = (master.get(pk), replica.get(pk))
    return out


# --------------------------------------------------------------------------------------------
# Revision sampling


class RevisionSampler:
    """Polls the replica's revisions and records any that goes backwards, or any row that comes
    back after it was deleted (the master never reuses a pk)."""

    def __init__(self, tables: Tables, above: int, interval: float = 0.15) -> None:
        self.tables, self.above, self.interval = tables, above, interval
        self.best: dict[int, int] = {}
        self.gone: set[int] = set()
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='revision-sampler', daemon=True)

    def start(self) -> RevisionSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        seen = self.tables.revisions(self.above)
        self.samples += 1
        for pk, rev in seen.items():
            if pk in self.gone:
                self.violations.append(f'pk {pk} came back at revision {rev} after it was deleted')
                self.gone.discard(pk)
            best = self.best.get(pk)
            if best is not None and rev < best:
                self.violations.append(f'pk {pk}: revision went back from {best} to {rev}')
            if best is None or rev > best:
                self.best[pk] = rev
        for pk in self.best:
            if pk not in seen:
                self.gone.add(pk)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.sample()
                except Exception as exc:  # a DB hiccup must not end the sampling silently
                    self.violations.append(f'sampler error: {exc!r}')
                    return
        finally:
            self.tables.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# --------------------------------------------------------------------------------------------
# The stack


@dataclass
class Stack:
    mode: str
    broker: harness.Broker
    master_db: str
    replica_db: str
    logs: Path
    master_proxy: TcpProxy
    replica_proxy: TcpProxy
    tables: Tables
    consumer: subprocess.Popen[Any] | None = None
    consumer_log: Path = Path()
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def outbox(self) -> bool:
        return self.mode == 'outbox'

    def master_url(self, query: str = '') -> str:
        url = services.amqp_url(self.broker.vhost, host='127.0.0.1', port=self.master_proxy.port)
        return f'{url}?{query}' if query else url

    def master_env(self, url_query: str = '', **extra: str) -> dict[str, str]:
        env = {
            'CQRS_E2E_URL': self.master_url(url_query),
            'CQRS_E2E_OUTBOX': '1' if self.outbox else '0',
            'CQRS_E2E_META_ACCESS': '0',
        }
        env.update(extra)
        return with_src(harness.project_env(harness.MASTER_PROJECT, self.master_db, self.broker, env))

    def replica_env(self) -> dict[str, str]:
        url = services.amqp_url(self.broker.vhost, host='127.0.0.1', port=self.replica_proxy.port)
        return with_src(
            harness.project_env(harness.REPLICA_PROJECT, self.replica_db, self.broker, {'CQRS_E2E_URL': url})
        )

    # -- consumer -----------------------------------------------------------------------------
    def start_consumer(self) -> None:
        self.consumer = harness.run_manage(
            harness.python_for('ours'),
            harness.REPLICA_PROJECT,
            ['cqrs_consume', '-w', str(WORKERS)],
            self.replica_env(),
            self.consumer_log,
        )
        self.processes.append(self.consumer)
        harness._wait_consumer_ready(self.broker, self.consumer, self.consumer_log)

    def kill_consumer(self) -> None:
        """SIGKILL the consumer's whole process group (the supervisor and its workers)."""
        assert self.consumer is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.consumer.pid, signal.SIGKILL)
        self.consumer.wait(10)
        # The broker requeues the unacked deliveries once it sees the connections closed.
        deadline = time.monotonic() + 20
        while (self.broker.consumer_count() or 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def ensure_consumer_alive(self) -> None:
        if self.consumer is not None and self.consumer.poll() is not None:
            raise harness.HarnessError(
                f'consumer exited ({self.consumer.returncode}):\n{harness.tail(self.consumer_log)}'
            )

    def ensure_consumer(self) -> None:
        if self.consumer is None or self.consumer.poll() is not None:
            if self.consumer is not None:
                harness._stop_group(self.consumer, grace=2)
            self.start_consumer()

    def ready_messages(self) -> int:
        import pika

        conn = self.broker.connection()
        try:
            try:
                return int(conn.channel().queue_declare(self.broker.queue, passive=True).method.message_count)
            except pika.exceptions.ChannelClosedByBroker:
                return 0
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # -- master processes ---------------------------------------------------------------------
    def agent(self, name: str, log: Path, url_query: str = '', **env: str) -> harness.Agent:
        agent = harness.Agent(
            name, harness.python_for('ours'), harness.MASTER_PROJECT, self.master_env(url_query, **env), log
        )
        self.processes.append(agent.proc)
        return agent

    def manage(self, args: list[str], log: Path, timeout: float = 120, **env: str) -> int:
        proc = harness.run_manage(
            harness.python_for('ours'), harness.MASTER_PROJECT, args, self.master_env(**env), log
        )
        self.processes.append(proc)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            harness._stop_group(proc)
            raise harness.HarnessError(f'manage.py {" ".join(args)} hung; log {log}:\n{harness.tail(log)}')

    def heal(self) -> None:
        self.master_proxy.heal()
        self.replica_proxy.heal()

    def stop_processes(self) -> None:
        for proc in reversed(self.processes):
            harness._stop_group(proc, grace=5)
        self.processes = [p for p in self.processes if p.poll() is None]


@contextlib.contextmanager
def run_stack(mode: str) -> Iterator[Stack]:
    logs = ARTIFACTS / mode
    import shutil

    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(harness.broker_for('ours', 'ours'))
        master_db = stack.enter_context(services.pg_database('crash_master'))
        replica_db = stack.enter_context(services.pg_database('crash_replica'))
        master_proxy = stack.enter_context(
            TcpProxy(services.RABBIT_HOST, services.RABBIT_PORT, 'master-proxy')
        )
        replica_proxy = stack.enter_context(
            TcpProxy(services.RABBIT_HOST, services.RABBIT_PORT, 'replica-proxy')
        )
        tables = Tables(master_db, replica_db)
        stack.callback(tables.close)
        running = Stack(
            mode,
            broker,
            master_db,
            replica_db,
            logs,
            master_proxy,
            replica_proxy,
            tables,
            consumer_log=logs / 'consumer.log',
        )
        stack.callback(running.stop_processes)
        (logs / 'run.json').write_text(
            json.dumps(
                {
                    'mode': mode,
                    'vhost': broker.vhost,
                    'master_db': master_db,
                    'replica_db': replica_db,
                    'master_proxy': master_proxy.port,
                    'replica_proxy': replica_proxy.port,
                },
                indent=2,
            )
        )
        notes = harness.migrate_both(
            [
                (
                    harness.python_for('ours'),
                    harness.MASTER_PROJECT,
                    running.master_env(),
                    logs / 'migrate-master.log',
                ),
                (
                    harness.python_for('ours'),
                    harness.REPLICA_PROJECT,
                    running.replica_env(),
                    logs / 'migrate-replica.log',
                ),
            ]
        )
        assert not notes, notes
        running.start_consumer()
        yield running


# --------------------------------------------------------------------------------------------
# One case


@dataclass
class Report:
    case: str
    mode: str
    written: int = 0
    published: int = 0
    publish_failures: int = 0
    kept_for_relay: int = 0
    received: int = 0
    duplicates: int = 0
    stale_skipped: int = 0
    dropped: int = 0  # committed events given up on: failed publishes or killed before it (no outbox)
    lost: int = 0  # rows whose final replica state differs from the master's
    outbox_left: int = 0
    samples: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f'[{self.mode}] {self.case}: written={self.written} published={self.published} '
            f'failed_publishes={self.publish_failures} duplicates={self.duplicates} '
            f'stale={self.stale_skipped} received={self.received} dropped={self.dropped} lost={self.lost} '
            f'outbox_left={self.outbox_left} samples={self.samples} ({self.seconds:.1f}s)'
            + (f' notes={self.notes}' if self.notes else '')
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Case:
    def __init__(self, stack: Stack, name: str) -> None:
        self.stack, self.name = stack, name
        self.logs = stack.logs / name
        self.logs.mkdir(parents=True, exist_ok=True)
        self.report = Report(name, stack.mode)
        self._agents: list[harness.Agent] = []
        self._relays = 0
        self.tables = stack.tables
        self.start_pk = self.tables.sequence(MASTER_TABLE)
        self.start_outbox = self.tables.sequence('dj_cqrs_outbox')
        self._consumer_offset = size_of(stack.consumer_log)
        self._started = time.monotonic()
        self.sampler = RevisionSampler(Tables(stack.master_db, stack.replica_db), self.start_pk).start()

    # -- processes ----------------------------------------------------------------------------
    def agent(self, label: str, url_query: str = '', **env: str) -> harness.Agent:
        agent = self.stack.agent(f'{self.name} {label}', self.logs / f'{label}.log', url_query, **env)
        self._agents.append(agent)
        agent.wait_ready()
        return agent

    def relay_once(self) -> int:
        self._relays += 1
        log = self.logs / f'relay-{self._relays}.log'
        return self.stack.manage(['cqrs_relay', '--once'], log)

    def close(self) -> None:
        self.sampler.stop()
        for agent in self._agents:
            agent.close()

    # -- measurements -------------------------------------------------------------------------
    def master_logs(self) -> list[Path]:
        return sorted(self.logs.glob('*.log'))

    def count_master(self, needle: str) -> int:
        return sum(count_lines(p, needle) for p in self.master_logs())

    def count_consumer(self, needles: str | tuple[str, ...]) -> int:
        return count_lines(self.stack.consumer_log, needles, self._consumer_offset)

    def diff(self) -> dict[int, tuple[Any, Any]]:
        return diff_rows(
            self.tables.rows('master', self.start_pk), self.tables.rows('replica', self.start_pk)
        )

    def wait_converged(self, timeout: float = 90, settle: float = 6.0) -> dict[int, tuple[Any, Any]]:
        """Wait until the replica equals the master on this case's rows (and, with the outbox, the
        outbox is empty), or until nothing moves for ``settle`` seconds. Returns the difference."""
        start = time.monotonic()
        last: Any = None
        quiet_since = start
        while True:
            self.stack.ensure_consumer_alive()
            diff = self.diff()
            backlog = self.tables.outbox_backlog()
            if not diff and backlog == 0 and self.stack.ready_messages() == 0:
                self._wait_consumer_quiet()
                return self.diff()
            now = time.monotonic()
            marker = (len(diff), sorted(diff)[:20], backlog, size_of(self.stack.consumer_log))
            if marker != last:
                last, quiet_since = marker, now
            if now - quiet_since > settle or now - start > timeout:
                return diff
            time.sleep(0.25)

    def _wait_consumer_quiet(self, quiet: float = 1.0, limit: float = 15.0) -> None:
        """Let the deliveries still in the consumer's hands (prefetched, unacked) be handled, so
        that the counts taken from its log are complete."""
        deadline = time.monotonic() + limit
        size, since = size_of(self.stack.consumer_log), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now_size = size_of(self.stack.consumer_log)
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since >= quiet and self.stack.ready_messages() == 0:
                return

    def finish(self, written: int, diff: dict[int, tuple[Any, Any]] | None = None, killed: int = 0) -> Report:
        """Fill the report after the case converged (or gave up)."""
        if diff is None:
            diff = self.wait_converged()
        self.sampler.sample()
        self.sampler.stop()
        report = self.report
        report.written = written
        report.published = self.count_master(PUBLISHED)
        report.publish_failures = self.count_master(PUBLISH_FAILED)
        report.kept_for_relay = self.count_master(KEPT)
        report.received = self.count_consumer(RECEIVED)
        report.duplicates = self.count_consumer(DUPLICATE)
        report.stale_skipped = self.count_consumer(STALE)
        report.outbox_left = self.tables.outbox_backlog()
        report.lost = len(diff)
        # Without the outbox a failed publish (or a process killed before it) drops the event; with
        # it, only what is still in the outbox at the end is undelivered.
        report.dropped = report.outbox_left if self.stack.outbox else report.publish_failures + killed
        report.samples = self.sampler.samples
        report.seconds = time.monotonic() - self._started
        if self.stack.outbox:
            outbox_written = self.tables.sequence('dj_cqrs_outbox') - self.start_outbox
            if outbox_written != written:
                report.notes.append(f'outbox rows written {outbox_written} != writes {written}')
        self.diff_detail = diff
        skipped = _relay_skipped(self.master_logs())
        if skipped:
            report.notes.append(
                f'{skipped} outbox row(s) of since-deleted rows skipped by the relay/catch-up'
            )
        if diff or self.sampler.violations:
            (self.logs / 'diff.json').write_text(
                json.dumps(
                    {'diff': {str(k): v for k, v in diff.items()}, 'violations': self.sampler.violations},
                    indent=1,
                    default=str,
                )
            )
        return report

    def describe_diff(self, diff: dict[int, tuple[Any, Any]], limit: int = 8) -> str:
        lines = []
        for pk, (m, r) in list(diff.items())[:limit]:
            lines.append(f'  pk {pk}: master={m}\n          replica={r}')
        return '\n'.join(lines)


def _relay_skipped(paths: list[Path]) -> int:
    """Rows the relay (``N event(s) published, M skipped.``) and the fast path's catch-up
    (``catch-up on default: N published, M skipped.``) skipped: their object was deleted since."""
    import re

    total = 0
    pattern = re.compile(r'(?:event\(s\) published|published), (\d+) skipped')
    for path in paths:
        try:
            text = path.read_text(errors='replace')
        except OSError:
            continue
        total += sum(int(m.group(1)) for m in pattern.finditer(text))
    return total


class Background:
    """Run a call in a thread (a long agent call while the test drives the faults)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:  # re-raised by join()
            self.error = exc

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise harness.HarnessError(f'background call still running after {timeout}s')
        if self.error is not None:
            raise self.error
        return self.result
