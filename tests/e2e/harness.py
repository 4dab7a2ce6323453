"""End-to-end harness: a master and a replica Django project as separate processes.

A *stack* is one master project and one replica project, each run by a chosen Python (``ours`` is
the project's ``.venv``, ``upstream`` is ``.venv-upstream`` with django-cqrs 3.1.0), with:

* two fresh PostgreSQL databases (master, replica), migrated with the chosen Python;
* broker names of its own: a per-run vhost when only our package takes part, otherwise vhost '/'
  (the upstream RabbitMQ transport ignores the vhost of its URL) with a unique exchange and queue;
* ``manage.py cqrs_consume -w 2`` for the replica, running in the background;
* two long-lived ``manage.py e2e_agent`` processes that execute JSON requests (the master's writes,
  the replica's reads), so that a test does not pay a Django start-up per step.

Everything is torn down at the end, even on failure: agents, consumer (whole process group),
queues and exchange (or the vhost), databases. Logs of every process are kept under
``.artifacts/e2e/<module>/<master>-<replica>/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import processes, services
from tests.support.processes import stop_group as _stop_group
from tests.support.processes import tail

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROJECTS = HERE / 'projects'
MASTER_PROJECT = PROJECTS / 'master_site'
REPLICA_PROJECT = PROJECTS / 'replica_site'
ARTIFACTS = REPO / '.artifacts' / 'e2e'

RUNTIMES = ('ours', 'upstream')
logging.getLogger('pika').setLevel(logging.ERROR)  # passive declares of a missing queue are expected
WORKERS = 2
DEFAULT_TIMEOUT = float(os.environ.get('CQRS_E2E_TIMEOUT', '30'))
DEFAULT_SETTLE = float(os.environ.get('CQRS_E2E_SETTLE', '8'))


def python_for(runtime: str) -> Path:
    if runtime == 'ours':
        return Path(os.environ.get('CQRS_E2E_OURS_PYTHON', REPO / '.venv' / 'bin' / 'python'))
    if runtime == 'upstream':
        return Path(os.environ.get('CQRS_E2E_UPSTREAM_PYTHON', REPO / '.venv-upstream' / 'bin' / 'python'))
    raise ValueError(f'unknown runtime {runtime!r}')


class HarnessError(AssertionError):
    """A harness-level failure; ``last`` is the last value seen by a wait, if any."""

    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


# --------------------------------------------------------------------------------------------
# Broker names


@dataclass
class Broker:
    token: str
    vhost: str
    url: str
    exchange: str
    queue: str
    shared_vhost: bool  # True: vhost '/', our objects must be deleted one by one

    def connection(self):  # type: ignore[no-untyped-def]
        import pika

        params = pika.ConnectionParameters(
            host=services.RABBIT_HOST,
            port=services.RABBIT_PORT,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials('guest', 'guest'),
            connection_attempts=3,
            retry_delay=0.5,
        )
        return pika.BlockingConnection(params)

    def consumer_count(self) -> int | None:
        """Consumers on the replica queue, or None while the queue does not exist."""
        import pika

        conn = self.connection()
        try:
            try:
                frame = conn.channel().queue_declare(self.queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return None
            return int(frame.method.consumer_count)
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def _list_names(kind: str, vhost: str) -> list[str]:
    out = subprocess.run(
        ['rabbitmqctl', '-q', f'list_{kind}', '-p', vhost, 'name'],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [line.strip() for line in out.splitlines()[1:] if line.strip()]


def leftover_broker_objects(broker: Broker) -> dict[str, list[str]]:
    """Queues and exchanges of vhost '/' whose name carries this run's token."""
    return {
        kind: [n for n in _list_names(kind, broker.vhost) if broker.token in n]
        for kind in ('queues', 'exchanges')
    }


def delete_broker_objects(broker: Broker) -> None:
    """Delete this run's queues (``<queue>``, ``dead_letter_<queue>``, any other one carrying the
    token) and exchanges from the shared vhost '/'."""
    queues = {broker.queue, f'dead_letter_{broker.queue}'}
    exchanges = {broker.exchange}
    with contextlib.suppress(Exception):
        found = leftover_broker_objects(broker)
        queues.update(found['queues'])
        exchanges.update(found['exchanges'])
    conn = broker.connection()
    try:
        for kind, names in (('queue', queues), ('exchange', exchanges)):
            for name in sorted(names):
                ch = conn.channel()  # a failed delete closes its channel
                with contextlib.suppress(Exception):
                    getattr(ch, f'{kind}_delete')(name)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def broker_for(master_runtime: str, replica_runtime: str) -> Iterator[Broker]:
    token = services.unique_name('e2e')
    exchange, queue_name = f'{token}_x', f'{token}_replica'
    if 'upstream' in (master_runtime, replica_runtime):
        broker = Broker(token, '/', services.amqp_url('%2F'), exchange, queue_name, shared_vhost=True)
        try:
            yield broker
        finally:
            delete_broker_objects(broker)
    else:
        with services.rabbit_vhost(token) as vhost:
            yield Broker(token, vhost, services.amqp_url(vhost), exchange, queue_name, shared_vhost=False)


# --------------------------------------------------------------------------------------------
# Processes


def project_env(
    project: Path, db: str, broker: Broker, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(('DJANGO_', 'CQRS_E2E_', 'PYTHONPATH', 'VIRTUAL_ENV', 'PYTEST_'))
    }
    env.update(
        DJANGO_SETTINGS_MODULE='master_settings' if project == MASTER_PROJECT else 'replica_settings',
        PYTHONPATH=f'{project}{os.pathsep}{PROJECTS}',
        PYTHONUNBUFFERED='1',
        CQRS_E2E_DB=db,
        CQRS_E2E_URL=broker.url,
        CQRS_E2E_EXCHANGE=broker.exchange,
        CQRS_E2E_QUEUE=broker.queue,
    )
    env.update(extra or {})
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


def wait_all(procs: dict[str, tuple[subprocess.Popen[Any], Path]], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for name, (proc, log) in procs.items():
        try:
            rc = proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            raise HarnessError(f'{name} timed out; log {log}:\n{tail(log)}')
        if rc != 0:
            raise HarnessError(f'{name} failed with exit code {rc}; log {log}:\n{tail(log)}')


def migrate_both(jobs: list[tuple[Path, Path, dict[str, str], Path]]) -> list[str]:
    """``manage.py migrate`` of both projects, in parallel, as a user would run it.

    If the plain command fails on the fresh database, the failure is recorded as a note (a test
    asserts there is none) and ``migrate --skip-checks`` is tried, so the other tests still run.
    """
    notes: list[str] = []
    procs = {
        f'{project.name} migrate': (run_manage(py, project, ['migrate', '-v', '0'], env, log), log)
        for py, project, env, log in jobs
    }
    retry = {}
    for (py, project, env, log), (name, (proc, _)) in zip(jobs, procs.items()):
        try:
            wait_all({name: (proc, log)})
        except HarnessError as exc:
            notes.append(f'{project.name}: `manage.py migrate` failed on a fresh database: {exc}')
            retry[f'{name} --skip-checks'] = (
                run_manage(py, project, ['migrate', '-v', '0', '--skip-checks'], env, log),
                log,
            )
    wait_all(retry)
    return notes


class AgentError(AssertionError):
    pass


class Agent(processes.Agent):
    """A long-lived ``manage.py e2e_agent`` (the protocol: :class:`tests.support.processes.Agent`)."""

    command = 'e2e_agent'
    error = AgentError


# --------------------------------------------------------------------------------------------
# The stack


@dataclass
class Stack:
    master_runtime: str
    replica_runtime: str
    broker: Broker
    master_db: str
    replica_db: str
    logs: Path
    master: Agent
    replica: Agent
    consumer: subprocess.Popen[Any]
    consumer_log: Path
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f'{self.master_runtime}->{self.replica_runtime}'

    def m(self, op: str, **kwargs: Any) -> Any:
        """Run an operation on the master."""
        return self.master.call(op, **kwargs)

    def r(self, op: str, **kwargs: Any) -> Any:
        """Run a read on the replica."""
        return self.replica.call(op, **kwargs)

    def consumer_alive(self) -> None:
        if self.consumer.poll() is not None:
            raise HarnessError(f'consumer exited ({self.consumer.returncode}):\n{tail(self.consumer_log)}')

    def _activity(self) -> tuple[int, int]:
        sizes = []
        for path in (self.consumer_log, self.master.log):
            try:
                sizes.append(path.stat().st_size)
            except OSError:
                sizes.append(-1)
        return sizes[0], sizes[1]

    def wait_until(
        self,
        probe: Callable[[], Any],
        predicate: Callable[[Any], bool],
        what: str,
        timeout: float = DEFAULT_TIMEOUT,
        settle: float | None = None,
    ) -> Any:
        """Poll ``probe()`` until ``predicate`` holds on its result, and return that result.

        Fails after ``timeout`` seconds, or earlier once nothing moves any more: the probed value
        unchanged and no new consumer or master log output for ``settle`` seconds.
        """
        settle = DEFAULT_SETTLE if settle is None else settle
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.02
        last: Any = object()
        last_activity: tuple[int, int] | None = None
        quiet_since = start
        while True:
            value = probe()
            if predicate(value):
                return value
            self.consumer_alive()
            now = time.monotonic()
            activity = self._activity()
            if value != last or activity != last_activity:
                last, last_activity, quiet_since = value, activity, now
            reason = None
            if now > deadline:
                reason = f'timed out after {timeout}s'
            elif now - quiet_since > settle:
                reason = f'settled without converging (nothing moved for {settle}s, {now - start:.1f}s in)'
            if reason:
                raise HarnessError(
                    f'[{self.label}] {reason} waiting for {what}\n'
                    f'last value: {json.dumps(value, indent=1, default=str)[:4000]}\n'
                    f'consumer log {self.consumer_log} (tail):\n{tail(self.consumer_log)}\n'
                    f'master log {self.master.log} (tail):\n{tail(self.master.log, 30)}',
                    value,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def wait_rows(
        self,
        model: str,
        expected: dict[Any, dict[str, Any] | None],
        timeout: float = DEFAULT_TIMEOUT,
        settle: float | None = None,
    ) -> dict[str, Any]:
        """Wait until each replica row matches: None means absent, a dict lists the field values."""
        pks = list(expected)

        def ok(state: dict[str, Any]) -> bool:
            for pk, want in expected.items():
                got = state.get(str(pk))
                if want is None:
                    if got is not None:
                        return False
                elif got is None or any(got.get(k) != v for k, v in want.items()):
                    return False
            return True

        return self.wait_until(
            lambda: self.r('state', model=model, pks=pks), ok, f'{model} rows {expected}', timeout, settle
        )

    def wait_hooks(
        self, cqrs_id: str, pk: Any, predicate: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        return self.wait_until(lambda: self.r('hooks', cqrs_id=cqrs_id, pk=pk), predicate, what)


def _wait_consumer_ready(
    broker: Broker, consumer: subprocess.Popen[Any], log: Path, timeout: float = 90
) -> None:
    """Ready once the replica queue exists with a consumer (bindings are made before consuming).
    Then give the remaining workers a short while to attach as well."""
    deadline = time.monotonic() + timeout
    first_seen: float | None = None
    while True:
        if consumer.poll() is not None:
            raise HarnessError(f'consumer exited ({consumer.returncode}) during start-up:\n{tail(log)}')
        count = broker.consumer_count() or 0
        now = time.monotonic()
        if count >= WORKERS:
            return
        if count >= 1:
            first_seen = first_seen or now
            if now - first_seen > 5:
                return
        if now > deadline:
            raise HarnessError(f'consumer not consuming after {timeout}s (consumers={count}):\n{tail(log)}')
        time.sleep(0.1)


@contextlib.contextmanager
def run_stack(master_runtime: str, replica_runtime: str, label: str) -> Iterator[Stack]:
    for runtime in (master_runtime, replica_runtime):
        if not python_for(runtime).exists():
            raise HarnessError(
                f'no Python for {runtime!r} at {python_for(runtime)} (run scripts/upstream-venv)'
            )
    logs = ARTIFACTS / label / f'{master_runtime}-{replica_runtime}'
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)

    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(broker_for(master_runtime, replica_runtime))
        master_db = stack.enter_context(services.pg_database('e2e_master'))
        replica_db = stack.enter_context(services.pg_database('e2e_replica'))
        (logs / 'run.json').write_text(
            json.dumps(
                {
                    'master': master_runtime,
                    'replica': replica_runtime,
                    'vhost': broker.vhost,
                    'exchange': broker.exchange,
                    'queue': broker.queue,
                    'master_db': master_db,
                    'replica_db': replica_db,
                },
                indent=2,
            )
        )
        master_env = project_env(
            MASTER_PROJECT,
            master_db,
            broker,
            {'CQRS_E2E_META_ACCESS': '1' if master_runtime == 'upstream' else '0'},
        )
        replica_env = project_env(REPLICA_PROJECT, replica_db, broker)
        mpy, rpy = python_for(master_runtime), python_for(replica_runtime)

        notes = migrate_both(
            [
                (mpy, MASTER_PROJECT, master_env, logs / 'migrate-master.log'),
                (rpy, REPLICA_PROJECT, replica_env, logs / 'migrate-replica.log'),
            ]
        )

        consumer_log = logs / 'consumer.log'
        consumer = run_manage(
            rpy, REPLICA_PROJECT, ['cqrs_consume', '-w', str(WORKERS)], replica_env, consumer_log
        )
        stack.callback(_stop_group, consumer)

        master = Agent('master agent', mpy, MASTER_PROJECT, master_env, logs / 'master-agent.log')
        stack.callback(master.close)
        replica = Agent('replica agent', rpy, REPLICA_PROJECT, replica_env, logs / 'replica-agent.log')
        stack.callback(replica.close)

        _wait_consumer_ready(broker, consumer, consumer_log)
        master.wait_ready()
        replica.wait_ready()

        yield Stack(
            master_runtime,
            replica_runtime,
            broker,
            master_db,
            replica_db,
            logs,
            master,
            replica,
            consumer,
            consumer_log,
            notes,
        )
