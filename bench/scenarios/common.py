"""The machinery shared by the scenarios: per-run services, processes, /proc sampling, convergence.

Only the standard library, psycopg and pika are imported here (lazily for the last two), so that
importing bench/run.py never needs Django, a database or a broker.

Timing sources, all on the machine's one realtime clock:

* the master agent reports ``time.time()`` around its own work (and, for latency, the moment each
  transaction committed);
* the replica table carries two extra columns that neither package knows about, kept by a
  ``BEFORE INSERT OR UPDATE`` trigger: ``bench_applied_at = clock_timestamp()`` and
  ``bench_writes`` (+1 per row write). The last apply is ``max(bench_applied_at)``: no polling
  error in any figure;
* for latency, a deferred constraint trigger logs each row write at the replica's COMMIT.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
PROJECTS = BENCH / 'projects'
MASTER_PROJECT = PROJECTS / 'master_site'
REPLICA_PROJECT = PROJECTS / 'replica_site'
ARTIFACTS = REPO / '.artifacts' / 'bench'

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import processes, services  # noqa: E402
from tests.support.processes import stop_group, tail  # noqa: E402

RUNTIMES = ('ours', 'upstream')
MASTER_TABLE = 'master_app_benchmodel'
PLAIN_TABLE = 'master_app_plainmodel'
REPLICA_TABLE = 'replica_app_benchreplica'
COLUMNS = 'id, cqrs_revision, name, value, payload, cqrs_updated'
CQRS_ID = 'bench'


class BenchError(RuntimeError):
    pass


class NotConverged(BenchError):
    """The replica did not end up equal to the master: the scenario reports FAILED."""


def python_for(runtime: str) -> Path:
    venv = {'ours': '.venv', 'upstream': '.venv-upstream'}[runtime]
    return REPO / venv / 'bin' / 'python'


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------------
# /proc sampling


CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f'/proc/{pid}/stat') as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(')') + 2 :].split()


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_hwm_kb(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in kB."""
    try:
        with open(f'/proc/{pid}/status') as fh:
            for line in fh:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_hwm(pid: int) -> None:
    """Reset a process's VmHWM to its current RSS (``echo 5 > /proc/<pid>/clear_refs``)."""
    with contextlib.suppress(OSError), open(f'/proc/{pid}/clear_refs', 'w') as fh:
        fh.write('5')


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid:
                pids.append(int(entry))
    return sorted(pids)


class GroupSampler:
    """Samples CPU and peak RSS of every process of a process group until stopped.

    Measurements are taken over *windows*: ``window_start()`` resets each process's VmHWM
    (``clear_refs``) and remembers its CPU; ``window_end()`` returns the CPU used since and the peak
    RSS reached since. The first window starts at process start (start-up included). The last
    values of each pid are kept, so a worker that exits before the end still counts.
    """

    def __init__(self, pgid: int, interval: float = 0.25) -> None:
        self.pgid, self.interval = pgid, interval
        self._lock = threading.Lock()
        self.cpu: dict[int, float] = {}
        self.hwm: dict[int, int] = {}
        self.cpu_base: dict[int, float] = {}
        self.cpu_at_mark: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        with self._lock:
            for pid in group_pids(self.pgid):
                cpu, hwm = proc_cpu(pid), proc_hwm_kb(pid)
                if cpu is not None:
                    self.cpu[pid] = cpu
                if hwm is not None:
                    self.hwm[pid] = max(hwm, self.hwm.get(pid, 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _window_cpu(self) -> float:
        return sum(cpu - self.cpu_base.get(pid, 0.0) for pid, cpu in self.cpu.items())

    def window_start(self) -> None:
        self.sample()
        with self._lock:
            for pid in group_pids(self.pgid):
                reset_hwm(pid)
            self.hwm = {}
            self.cpu_base = dict(self.cpu)
            self.cpu_at_mark = None
        self.sample()

    def mark(self) -> None:
        """Remember the window's CPU now (e.g. at the first applied event: the start-up cost)."""
        self.sample()
        with self._lock:
            self.cpu_at_mark = self._window_cpu()

    def window_end(self) -> dict[str, Any]:
        self.sample()
        with self._lock:
            workers = {pid: kb for pid, kb in self.hwm.items() if pid != self.pgid} or dict(self.hwm)
            total = self._window_cpu()
            return {
                'cpu_s': round(total, 3),
                'cpu_s_after_mark': None if self.cpu_at_mark is None else round(total - self.cpu_at_mark, 3),
                'worker_peak_rss_mb': round(max(workers.values()) / 1024, 1) if workers else None,
                'supervisor_peak_rss_mb': (
                    round(self.hwm[self.pgid] / 1024, 1)
                    if self.pgid in self.hwm and len(self.hwm) > 1
                    else None
                ),
                'processes': len(self.hwm),
            }

    def stop(self) -> dict[str, Any]:
        result = self.window_end()
        self._stop.set()
        self._thread.join(2)
        return result


class MasterProbe:
    """CPU and peak RSS of a long-lived agent process over one measurement."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        reset_hwm(pid)
        self.cpu0 = proc_cpu(pid) or 0.0

    def end(self) -> dict[str, Any]:
        hwm = proc_hwm_kb(self.pid)
        return {
            'master_cpu_s': round((proc_cpu(self.pid) or 0.0) - self.cpu0, 3),
            'master_peak_rss_mb': None if hwm is None else round(hwm / 1024, 1),
        }


# --------------------------------------------------------------------------------------------
# Processes


def project_env(project: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(('DJANGO_', 'BENCH_', 'PYTHONPATH', 'VIRTUAL_ENV', 'PYTEST_', 'CQRS_'))
    }
    env.update(
        DJANGO_SETTINGS_MODULE='master_settings' if project == MASTER_PROJECT else 'replica_settings',
        PYTHONPATH=f'{project}{os.pathsep}{PROJECTS}',
        PYTHONUNBUFFERED='1',
        PYTHONDONTWRITEBYTECODE='1',
    )
    env.update(extra)
    return env


def run_manage(
    python: Path, project: Path, args: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open('ab') as fh:
        fh.write(f'$ {python} manage.py {" ".join(args)}\n'.encode())
        return subprocess.Popen(
            [str(python), str(project / 'manage.py'), *args],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_manage_sync(
    python: Path, project: Path, args: list[str], env: dict[str, str], log: Path, timeout: float = 300
) -> None:
    proc = run_manage(python, project, args, env, log)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        raise BenchError(f'manage.py {" ".join(args)} timed out; log {log}:\n{tail(log)}')
    if rc != 0:
        raise BenchError(f'manage.py {" ".join(args)} failed ({rc}); log {log}:\n{tail(log)}')


class AgentError(BenchError):
    pass


class Agent(processes.Agent):
    """A long-lived ``manage.py bench_agent`` (the protocol: :class:`tests.support.processes.Agent`)."""

    command = 'bench_agent'
    error = AgentError
    call_timeout = 600.0
    close_timeout = 10.0


# --------------------------------------------------------------------------------------------
# Broker


@dataclass
class Namespace:
    """Where one stack's messages live: a vhost, an exchange, queues."""

    vhost: str
    exchange: str
    queue: str
    token: str
    own_vhost: bool

    @property
    def url(self) -> str:
        return services.amqp_url('%2F' if self.vhost == '/' else self.vhost)

    def connection(self) -> Any:
        import pika

        params = pika.ConnectionParameters(
            host=services.RABBIT_HOST,
            port=services.RABBIT_PORT,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials('guest', 'guest'),
            connection_attempts=3,
            retry_delay=0.5,
            heartbeat=0,
        )
        return pika.BlockingConnection(params)

    def declare_queue(self, name: str, keys: tuple[str, ...] = (CQRS_ID,)) -> None:
        """A durable queue without arguments (what both packages declare), bound to ``keys``."""
        from pika.exchange_type import ExchangeType

        conn = self.connection()
        try:
            ch = conn.channel()
            ch.exchange_declare(self.exchange, ExchangeType.topic, durable=True)
            ch.queue_declare(name, durable=True)
            for key in keys:
                ch.queue_bind(name, self.exchange, routing_key=key)
        finally:
            conn.close()

    def _passive(self, name: str) -> Any:
        import pika

        conn = self.connection()
        try:
            try:
                return conn.channel().queue_declare(name, passive=True).method
            except pika.exceptions.ChannelClosedByBroker:
                return None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def depth(self, name: str) -> int:
        method = self._passive(name)
        return 0 if method is None else int(method.message_count)

    def consumers(self, name: str) -> int:
        method = self._passive(name)
        return 0 if method is None else int(method.consumer_count)

    def purge(self, name: str) -> None:
        conn = self.connection()
        try:
            with contextlib.suppress(Exception):
                conn.channel().queue_purge(name)
        finally:
            conn.close()

    def delete_objects(self) -> None:
        """Delete this run's queues and exchanges (every name carrying the token)."""
        names: dict[str, list[str]] = {}
        for kind in ('queues', 'exchanges'):
            out = subprocess.run(
                ['rabbitmqctl', '-q', f'list_{kind}', '-p', self.vhost, 'name'],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            names[kind] = [n.strip() for n in out.splitlines() if self.token in n]
        conn = self.connection()
        try:
            for q in names['queues']:
                with contextlib.suppress(Exception):
                    conn.channel().queue_delete(q)
            for x in names['exchanges']:
                with contextlib.suppress(Exception):
                    conn.channel().exchange_delete(x)
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def wait_consumers(ns: Namespace, queue_name: str, proc: subprocess.Popen[Any], n: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise BenchError(f'consumer exited ({proc.returncode}) during start-up:\n{tail(log)}')
        if ns.consumers(queue_name) >= n:
            return
        if time.monotonic() > deadline:
            raise BenchError(f'consumer not consuming {queue_name} after 90 s:\n{tail(log)}')
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# PostgreSQL


def pg(dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=services.PG_HOST, port=services.PG_PORT, user='postgres', dbname=dbname, autocommit=True
    )


MARK_SQL = """
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS bench_applied_at timestamptz,
                ADD COLUMN IF NOT EXISTS bench_writes integer NOT NULL DEFAULT 0;
CREATE OR REPLACE FUNCTION bench_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.bench_applied_at := clock_timestamp();
  IF TG_OP = 'UPDATE' THEN NEW.bench_writes := OLD.bench_writes + 1; ELSE NEW.bench_writes := 1; END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS bench_mark ON {t};
CREATE TRIGGER bench_mark BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION bench_mark();
"""

COMMIT_LOG_SQL = """
CREATE TABLE IF NOT EXISTS bench_commit_log (id integer, rev integer, at timestamptz);
TRUNCATE bench_commit_log;
CREATE OR REPLACE FUNCTION bench_commit_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_commit_log VALUES (NEW.id, NEW.cqrs_revision, clock_timestamp());
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_commit_log ON {t};
CREATE CONSTRAINT TRIGGER bench_commit_log AFTER INSERT OR UPDATE ON {t}
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_commit_log();
"""

RAW_REPLICA_SQL = """
CREATE TABLE {t} (
  id integer PRIMARY KEY,
  cqrs_revision integer NOT NULL,
  cqrs_updated timestamptz NOT NULL,
  name varchar(100) NOT NULL,
  value integer NOT NULL,
  payload varchar(200) NOT NULL
);
"""


def install_marks(db: str, table: str = REPLICA_TABLE) -> None:
    with pg(db) as conn:
        conn.execute(MARK_SQL.format(t=table))


def install_commit_log(db: str, table: str = REPLICA_TABLE) -> None:
    with pg(db) as conn:
        conn.execute(COMMIT_LOG_SQL.format(t=table))


def drop_commit_log(db: str, table: str = REPLICA_TABLE) -> None:
    with pg(db) as conn:
        conn.execute(f'DROP TRIGGER IF EXISTS bench_commit_log ON {table}')


def truncate(db: str, *tables: str) -> None:
    with pg(db) as conn:
        for table in tables:
            conn.execute(f'TRUNCATE {table} RESTART IDENTITY CASCADE')


def fill_master(db: str, n: int) -> None:
    """``n`` master rows written directly in SQL (no events): the data set of dump and sync."""
    with pg(db) as conn:
        conn.execute(
            f'INSERT INTO {MASTER_TABLE} (name, value, payload, cqrs_revision, cqrs_updated) '
            "SELECT 'fill-' || g, g, repeat('p', 100), 0, now() FROM generate_series(1, %s) g",
            [n],
        )


def table_summary(db: str, table: str) -> tuple[int, int]:
    with pg(db) as conn:
        row = conn.execute(f'SELECT count(*), coalesce(sum(cqrs_revision), 0) FROM {table}').fetchone()
    return int(row[0]), int(row[1])


def rows(db: str, table: str) -> list[tuple[Any, ...]]:
    with pg(db) as conn:
        return list(conn.execute(f'SELECT {COLUMNS} FROM {table} ORDER BY id').fetchall())


def compare(master_db: str, replica_db: str, replica_table: str = REPLICA_TABLE) -> str | None:
    """None when the replica equals the master (row count; revision and fields of every row)."""
    want, got = rows(master_db, MASTER_TABLE), rows(replica_db, replica_table)
    if len(want) != len(got):
        return f'row count: master {len(want)}, replica {len(got)}'
    bad = [(w, g) for w, g in zip(want, got) if w != g]
    if bad:
        w, g = bad[0]
        return f'{len(bad)} row(s) differ; first: master {w!r} replica {g!r}'
    return None


@dataclass
class Converged:
    first_applied: float  # epoch seconds
    last_applied: float
    writes: int  # replica row writes (bench_writes)
    waited: float


def wait_converged(
    master_db: str,
    replica_db: str,
    *,
    replica_table: str = REPLICA_TABLE,
    timeout: float = 120.0,
    settle: float = 10.0,
    alive: Any = None,
) -> Converged:
    """Poll until the replica equals the master, then read the apply times from the trigger columns.

    Raises NotConverged after ``timeout`` or once nothing moved for ``settle`` seconds.
    """
    want = table_summary(master_db, MASTER_TABLE)
    start = time.monotonic()
    last_seen: Any = None
    moved = start
    delay = 0.02
    with pg(replica_db) as conn:
        while True:
            row = conn.execute(
                f'SELECT count(*), coalesce(sum(cqrs_revision), 0), '
                f'extract(epoch FROM min(bench_applied_at)), extract(epoch FROM max(bench_applied_at)), '
                f'coalesce(sum(bench_writes), 0) FROM {replica_table}'
            ).fetchone()
            got = (int(row[0]), int(row[1]))
            now = time.monotonic()
            if got == want:
                problem = compare(master_db, replica_db, replica_table)
                if problem is None:
                    return Converged(float(row[2]), float(row[3]), int(row[4]), now - start)
            else:
                problem = f'count/sum(revision): master {want}, replica {got}'
            if row != last_seen:
                last_seen, moved = row, now
            if alive is not None:
                alive()
            if now - start > timeout:
                raise NotConverged(f'not converged after {timeout:.0f} s: {problem}')
            if now - moved > settle:
                raise NotConverged(f'nothing moved for {settle:.0f} s: {problem}')
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)


# --------------------------------------------------------------------------------------------
# A run's resources


@dataclass
class Stack:
    """One package's master and replica projects: databases, broker names, a master agent."""

    runtime: str
    ns: Namespace
    master_db: str
    replica_db: str
    logs: Path
    master: Agent | None = None
    replica: Agent | None = None
    consumer: subprocess.Popen[Any] | None = None
    consumer_log: Path | None = None
    commands: dict[str, bool] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return python_for(self.runtime)

    def master_env(self, ns: Namespace | None = None) -> dict[str, str]:
        ns = ns or self.ns
        return project_env(
            MASTER_PROJECT, {'BENCH_DB': self.master_db, 'BENCH_URL': ns.url, 'BENCH_EXCHANGE': ns.exchange}
        )

    def replica_env(
        self, ns: Namespace | None = None, queue_name: str | None = None, conn_max_age: int = 0
    ) -> dict[str, str]:
        ns = ns or self.ns
        return project_env(
            REPLICA_PROJECT,
            {
                'BENCH_DB': self.replica_db,
                'BENCH_URL': ns.url,
                'BENCH_EXCHANGE': ns.exchange,
                'BENCH_QUEUE': queue_name or ns.queue,
                'BENCH_CONN_MAX_AGE': str(conn_max_age),
            },
        )

    def start_master(self, ns: Namespace | None = None, name: str = 'master') -> Agent:
        agent = Agent(
            f'{self.runtime} {name}',
            self.python,
            MASTER_PROJECT,
            self.master_env(ns),
            self.logs / f'{name}.log',
        )
        return agent.wait_ready()

    def start_replica_agent(self) -> Agent:
        if self.replica is None:
            self.replica = Agent(
                f'{self.runtime} replica agent',
                self.python,
                REPLICA_PROJECT,
                self.replica_env(),
                self.logs / 'replica-agent.log',
            ).wait_ready()
        return self.replica

    @contextlib.contextmanager
    def consuming(
        self,
        workers: int = 1,
        ns: Namespace | None = None,
        queue_name: str | None = None,
        conn_max_age: int = 0,
        wait: bool = True,
        label: str = 'consumer',
    ) -> Iterator[Session]:
        """``manage.py cqrs_consume -w N`` in the background, with a /proc sampler on its group."""
        ns = ns or self.ns
        queue_name = queue_name or ns.queue
        log = self.logs / f'{label}.log'
        t_spawn = time.time()
        proc = run_manage(
            self.python,
            REPLICA_PROJECT,
            ['cqrs_consume', '-w', str(workers)],
            self.replica_env(ns, queue_name, conn_max_age),
            log,
        )
        session = Session(proc, GroupSampler(proc.pid), log, ns, queue_name, workers, t_spawn)
        try:
            if wait:
                wait_consumers(ns, queue_name, proc, workers, log)
            yield session
        finally:
            session.sampler.stop()
            stop_group(proc)

    def close(self) -> None:
        for agent in (self.master, self.replica):
            if agent is not None:
                agent.close()
        self.master = self.replica = None


@dataclass
class Session:
    """A running ``cqrs_consume``."""

    proc: subprocess.Popen[Any]
    sampler: GroupSampler
    log: Path
    ns: Namespace
    queue: str
    workers: int
    t_spawn: float

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise NotConverged(f'consumer exited ({self.proc.returncode}):\n{tail(self.log)}')


class Resources:
    """Everything a bench run creates, torn down at the end (even on Ctrl-C)."""

    def __init__(self, logs: Path) -> None:
        self.token = services.unique_name('bench')
        self.logs = logs
        self._exit = contextlib.ExitStack()
        self.stacks: dict[str, Stack] = {}
        self.shared: Namespace | None = None  # vhost '/': upstream, and the drain shared by both

    def __enter__(self) -> Resources:
        return self

    def __exit__(self, *exc: Any) -> None:
        for stack in self.stacks.values():
            with contextlib.suppress(Exception):
                stack.close()
        self._exit.close()

    def namespace(self, runtime: str) -> Namespace:
        if runtime == 'ours':
            vhost = f'{self.token}_v'
            services.create_vhost(vhost)
            self._exit.callback(services.delete_vhost, vhost)
            return Namespace(vhost, f'{self.token}_x', f'{self.token}_q', self.token, True)
        ns = Namespace('/', f'{self.token}_ux', f'{self.token}_uq', self.token, False)
        self._exit.callback(ns.delete_objects)
        return ns

    def shared_namespace(self) -> Namespace:
        if self.shared is None:
            self.shared = Namespace('/', f'{self.token}_dx', f'{self.token}_dq', self.token, False)
            self._exit.callback(self.shared.delete_objects)
        return self.shared

    def database(self, prefix: str) -> str:
        name = f'{self.token}_{prefix}'
        services.create_pg_database(name)
        self._exit.callback(services.drop_pg_database, name)
        return name

    def stack(self, runtime: str) -> Stack:
        """The runtime's stack, created and migrated on first use."""
        if runtime in self.stacks:
            return self.stacks[runtime]
        logs = self.logs / runtime
        if logs.exists():
            shutil.rmtree(logs)
        stack = Stack(
            runtime,
            self.namespace(runtime),
            self.database(f'{runtime}_m'),
            self.database(f'{runtime}_r'),
            logs,
        )
        procs = [
            (
                run_manage(
                    stack.python,
                    MASTER_PROJECT,
                    ['migrate', '-v', '0'],
                    stack.master_env(),
                    logs / 'migrate.log',
                ),
                'master',
            ),
            (
                run_manage(
                    stack.python,
                    REPLICA_PROJECT,
                    ['migrate', '-v', '0'],
                    stack.replica_env(),
                    logs / 'migrate-r.log',
                ),
                'replica',
            ),
        ]
        for proc, what in procs:
            if proc.wait(300) != 0:
                raise BenchError(f'{runtime} {what} migrate failed:\n{tail(logs / "migrate.log")}')
        install_marks(stack.replica_db)
        stack.ns.declare_queue(stack.ns.queue)  # bound before any publish: nothing is unroutable
        stack.master = stack.start_master()
        self.stacks[runtime] = stack
        return stack

    def raw_db(self) -> str:
        name = f'{self.token}_raw'
        if not getattr(self, '_raw', None):
            services.create_pg_database(name)
            self._exit.callback(services.drop_pg_database, name)
            with pg(name) as conn:
                conn.execute(RAW_REPLICA_SQL.format(t=REPLICA_TABLE))
            install_marks(name)
            self._raw = name
        return name

    def reset(self, stack: Stack) -> None:
        """Empty master and replica tables and the replica queue between scenarios."""
        truncate(stack.master_db, MASTER_TABLE, PLAIN_TABLE)
        truncate(stack.replica_db, REPLICA_TABLE)
        for db, table in (
            (stack.replica_db, 'dj_cqrs_replica_tombstone'),
            (stack.master_db, 'dj_cqrs_outbox'),
        ):
            with pg(db) as conn:
                exists = conn.execute('SELECT to_regclass(%s)', [table]).fetchone()[0]
                if exists:
                    conn.execute(f'TRUNCATE {table}')
        stack.ns.purge(stack.ns.queue)


def run_raw(mode: str, timeout: float = 600, **kwargs: Any) -> dict[str, Any]:
    """A raw-ceiling measurement in a process of its own (see raw.py)."""
    proc = subprocess.run(
        [str(python_for('ours')), '-m', 'bench.scenarios.raw', mode, json.dumps(kwargs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith(('DJANGO_', 'PYTHONPATH'))},
    )
    if proc.returncode != 0:
        raise BenchError(f'raw {mode} failed: {proc.stderr[-2000:]}')
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
