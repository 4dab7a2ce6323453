"""Per-run resources on the machine's real services.

Every test run creates its own RabbitMQ vhost and its own database names, and drops them at the
end, so runs never collide and the shared services are left as they were found.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

RABBIT_HOST = os.environ.get('CQRS_TEST_RABBIT_HOST', '127.0.0.1')
RABBIT_PORT = int(os.environ.get('CQRS_TEST_RABBIT_PORT', '5672'))
PG_HOST = os.environ.get('CQRS_TEST_PG_HOST', '127.0.0.1')
PG_PORT = int(os.environ.get('CQRS_TEST_PG_PORT', '5432'))
MYSQL_HOST = os.environ.get('CQRS_TEST_MYSQL_HOST', '127.0.0.1')
MYSQL_PORT = int(os.environ.get('CQRS_TEST_MYSQL_PORT', '3306'))


def unique_name(prefix: str) -> str:
    return f'{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}'


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(['rabbitmqctl', '-q', *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> None:
    _rabbitmqctl('add_vhost', name)
    _rabbitmqctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*')


def delete_vhost(name: str) -> None:
    subprocess.run(['rabbitmqctl', '-q', 'delete_vhost', name], capture_output=True, timeout=60)


def amqp_url(vhost: str, host: str = RABBIT_HOST, port: int = RABBIT_PORT) -> str:
    return f'amqp://guest:guest@{host}:{port}/{vhost}'


@contextmanager
def rabbit_vhost(prefix: str = 'cqrs_test') -> Iterator[str]:
    """Yield the name of a fresh vhost that exists only for the block."""
    name = unique_name(prefix)
    create_vhost(name)
    try:
        yield name
    finally:
        delete_vhost(name)


def _pg_connect(dbname: str = 'postgres'):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user='postgres', dbname=dbname, autocommit=True)


def create_pg_database(name: str) -> None:
    with _pg_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    with _pg_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def pg_database(prefix: str = 'cqrs_test') -> Iterator[str]:
    name = unique_name(prefix)
    create_pg_database(name)
    try:
        yield name
    finally:
        drop_pg_database(name)


def pg_settings(name: str) -> dict[str, object]:
    """A Django DATABASES entry for a per-run PostgreSQL database."""
    return {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': name,
        'USER': 'postgres',
        'HOST': PG_HOST,
        'PORT': PG_PORT,
        'TEST': {'NAME': name},
    }


def close_rabbit_connections(vhost: str, connection_name: str) -> int:
    """Make the broker close this vhost's connections whose name contains ``connection_name``
    (never anyone else's: the broker is shared)."""
    out = subprocess.run(
        ['rabbitmqctl', '-q', 'list_connections', '--no-table-headers', 'pid', 'vhost', 'client_properties'],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    closed = 0
    for line in out.splitlines():
        pid, conn_vhost, props = line.split('\t', 2)
        if conn_vhost == vhost and connection_name in props:
            subprocess.run(['rabbitmqctl', '-q', 'close_connection', pid, 'test'], check=False, timeout=60)
            closed += 1
    return closed


@contextmanager
def mariadb_settings(prefix: str = 'cqrs_test') -> Iterator[dict[str, object]]:
    """Yield a Django DATABASES entry for a fresh MariaDB database that exists only for the block
    (the PyMySQL driver stands in for mysqlclient; the test is skipped without it)."""
    import pytest

    pymysql = pytest.importorskip('pymysql')
    pymysql.version_info = (2, 2, 1, 'final', 0)  # Django asks for mysqlclient >= 2.2.1
    pymysql.install_as_MySQLdb()
    name = unique_name(prefix)
    root = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user='root')
    try:
        with root.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE `{name}`')
        try:
            yield {
                'ENGINE': 'django.db.backends.mysql',
                'NAME': name,
                'USER': 'root',
                'HOST': MYSQL_HOST,
                'PORT': MYSQL_PORT,
            }
        finally:
            with root.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS `{name}`')
    finally:
        root.close()


@contextmanager
def django_alias(alias: str, config: dict[str, object]) -> Iterator[str]:
    """Register ``config`` as the Django database ``alias`` for the block (outside the test
    databases pytest-django manages), then close and remove it."""
    from django.db import connections

    configured = connections.configure_settings({'default': connections.settings['default'], alias: config})
    connections.settings[alias] = configured[alias]
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections.settings[alias]
