#!/usr/bin/env python
"""Runs the dj_cqrs demo: a master service, a replica service, the consumer and the relay.

    bash scripts/demo                  # embedded broker (kombu filesystem://), no server needed
    CQRS_DEMO_URL=amqp://guest:guest@localhost:5672/%2F bash scripts/demo   # the same on RabbitMQ

Steps: migrate both SQLite databases, declare the replica's queue, seed an empty catalog, then start
``runserver`` for both projects (on free localhost ports), ``cqrs_consume -w 1`` for the replica and
``cqrs_relay`` for the master, and print the two URLs. Ctrl-C (or SIGTERM) stops every process
group, waits for them and exits; nothing is left running. Each process logs to
``<state>/logs/<name>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECTS = {'master': HERE / 'master', 'replica': HERE / 'replica'}
SETTINGS = {'master': 'demo_master.settings', 'replica': 'demo_replica.settings'}
DEFAULT_PORTS = {'master': 8000, 'replica': 8001}
STOP_TIMEOUT = 10.0


class DemoError(Exception):
    pass


def free_port(host: str, preferred: int | None) -> int:
    """``preferred`` if it can be bound now, else a port the OS picks (0 asks for that)."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError(f'no free port on {host}')


def _die_with_parent() -> None:
    """In the child: start a session of its own (Ctrl-C reaches the launcher only, which stops the
    children in order) and, on Linux, get SIGTERM if the launcher dies without cleaning up."""
    os.setsid()
    if sys.platform.startswith('linux'):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.state).resolve()
        self.logs = self.state / 'logs'
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self._stopping = False

    # -- environment ------------------------------------------------------------------------------
    def env(self, side: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(('DJANGO_', 'PYTHONPATH'))}
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS[side],
            PYTHONPATH=os.pathsep.join([str(PROJECTS[side]), str(HERE)]),
            PYTHONUNBUFFERED='1',
            CQRS_DEMO_STATE=str(self.state),
            CQRS_DEMO_MASTER_URL=self.urls.get('master', ''),
            CQRS_DEMO_REPLICA_URL=self.urls.get('replica', ''),
        )
        return env

    def manage(self, side: str, *args: str) -> list[str]:
        return [sys.executable, str(PROJECTS[side] / 'manage.py'), *args]

    def run_step(self, side: str, *args: str) -> str:
        """A one-shot management command; its output goes to the side's setup log."""
        result = subprocess.run(
            self.manage(side, *args),
            env=self.env(side),
            cwd=PROJECTS[side],
            capture_output=True,
            text=True,
            timeout=300,
        )
        with open(self.logs / f'setup-{side}.log', 'a') as log:
            log.write(f'$ manage.py {" ".join(args)}\n{result.stdout}{result.stderr}\n')
        if result.returncode:
            output = (result.stderr or result.stdout)[-3000:]
            raise DemoError(f'`manage.py {" ".join(args)}` failed for the {side}:\n{output}')
        return result.stdout

    def start(self, name: str, side: str, *args: str) -> None:
        log = open(self.logs / f'{name}.log', 'ab')  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            self.manage(side, *args),
            env=self.env(side),
            cwd=PROJECTS[side],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()

    # -- lifecycle --------------------------------------------------------------------------------
    def prepare(self) -> None:
        if self.args.fresh and self.state.exists():
            import shutil

            shutil.rmtree(self.state)
        self.logs.mkdir(parents=True, exist_ok=True)
        host = self.args.host
        for side in ('master', 'replica'):
            wanted = getattr(self.args, f'{side}_port')
            port = free_port(host, DEFAULT_PORTS[side] if wanted is None else wanted)
            self.urls[side] = f'http://{host}:{port}/'
        if self.urls['master'] == self.urls['replica']:
            raise DemoError('the master and the replica need two different ports')
        for side in ('master', 'replica'):
            self.say(f'Migrating the {side} database ...')
            self.run_step(side, 'migrate', '--no-input')
            # Write-ahead logging: the web server reads while the consumer (or relay) writes.
            with contextlib.closing(sqlite3.connect(self.state / f'{side}.sqlite3')) as db:
                db.execute('PRAGMA journal_mode=WAL')
        # Bind the replica's queue before the master publishes anything (a topic exchange drops
        # what no queue is bound for), then seed an empty catalog.
        self.run_step('replica', 'demo_declare')
        if not self.args.no_seed:
            self.run_step('master', 'demo_seed')

    def launch(self) -> None:
        self.start('consumer', 'replica', 'cqrs_consume', '-w', '1')
        self.start('relay', 'master', 'cqrs_relay')
        for side in ('master', 'replica'):
            address = self.urls[side].removeprefix('http://').rstrip('/')
            self.start(side, side, 'runserver', address, '--noreload')
        deadline = time.monotonic() + self.args.timeout
        for side in ('master', 'replica'):
            while not self._answers(self.urls[side]):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise DemoError(
                        f'the {side} did not answer on {self.urls[side]} in {self.args.timeout:.0f} s'
                    )
                time.sleep(0.2)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                raise DemoError(f'{name} exited with status {code}:\n{self.tail(name)}')

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f'{name}.log').read_text(errors='replace').splitlines()
        except OSError:
            return '(no log)'
        return '\n'.join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM every process group, wait, SIGKILL what is left, wait until the groups are empty."""
        self._stopping = True
        for proc in self.processes.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for proc in self.processes.values():
            if proc.poll() is None or _group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            end = time.monotonic() + 5
            while _group_alive(proc.pid) and time.monotonic() < end:
                time.sleep(0.05)

    def write_ready_file(self) -> None:
        if not self.args.ready_file:
            return
        data = {
            'master': self.urls['master'],
            'replica': self.urls['replica'],
            'state': str(self.state),
            'pids': {name: proc.pid for name, proc in self.processes.items()},
            'launcher': os.getpid(),
        }
        path = Path(self.args.ready_file)
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(text, flush=True)

    def banner(self) -> None:
        sys.path.insert(0, str(HERE))
        os.environ['CQRS_DEMO_STATE'] = str(self.state)
        from demo_common import describe_transport

        self.say(
            '\n'
            'dj_cqrs demo is running.\n'
            f'  Master   {self.urls["master"]}   create, edit and delete items\n'
            f"  Replica  {self.urls['replica']}   the replica's copy, updated live\n"
            f'  Broker   {describe_transport()}\n'
            f'  Logs     {self.logs}/{{master,replica,consumer,relay}}.log\n'
            'Press Ctrl-C to stop.'
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run the dj_cqrs demo (master, replica, consumer, relay).')
    parser.add_argument(
        '--state', default=str(HERE / '.state'), help='State folder (default: examples/demo/.state)'
    )
    parser.add_argument('--fresh', action='store_true', help='Delete the state folder first')
    parser.add_argument('--host', default='127.0.0.1', help='Address of both web servers (default 127.0.0.1)')
    parser.add_argument(
        '--master-port', type=int, default=None, help='Default 8000 if free; 0 for any free port'
    )
    parser.add_argument(
        '--replica-port', type=int, default=None, help='Default 8001 if free; 0 for any free port'
    )
    parser.add_argument('--no-seed', action='store_true', help='Do not seed an empty catalog')
    parser.add_argument('--timeout', type=float, default=60.0, help='Seconds to wait for the web servers')
    parser.add_argument('--ready-file', default=None, help='Write the URLs and pids as JSON here once ready')
    parser.add_argument('--quiet', action='store_true', help='Print errors only')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    demo = Demo(parse_args(argv))
    stop_requested: list[int] = []

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.append(signum)
        raise KeyboardInterrupt

    # SIGINT explicitly too: a launcher started in the background of a script inherits it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    status = 0
    try:
        demo.prepare()
        demo.launch()
        demo.write_ready_file()
        demo.banner()
        while True:
            demo.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        demo.say('\nStopping ...')
    except DemoError as exc:
        print(f'demo: {exc}', file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        demo.stop()
        if demo.processes:
            demo.say('Stopped.')
    return status


if __name__ == '__main__':
    sys.exit(main())
