"""CQRS_QUERY_TIMEOUT and timed-out query logging on PostgreSQL and MariaDB (real servers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

from dj_cqrs.replica import dispatch
from dj_cqrs.replica.managers import last_error
from tests.support import services
from tests.testapp import models as m

SETTINGS = {
    'transport': 'dj_cqrs.testing.LoopbackTransport',
    'queue': 'replica',
    'replica': {
        'CQRS_QUERY_TIMEOUT': 50,
        'CQRS_LOG_TIMED_OUT_QUERIES': True,
        'CQRS_QUERY_LOGGER': 'slow-queries',
    },
}
DATA = {'id': 1, 'name': 'n', 'counter': 0, 'cqrs_revision': 0, 'cqrs_updated': '2024-05-01 10:00:00+00:00'}


@pytest.mark.django_db(transaction=True)
@override_settings(CQRS=SETTINGS)
def test_postgresql_statement_timeout_fails_the_event_and_logs_the_query(monkeypatch, caplog) -> None:
    def slow(cls: Any, master_data: Any, **kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_sleep(0.5)')
        return True

    monkeypatch.setattr(m.BasicReplica, 'cqrs_save', classmethod(slow))
    caplog.set_level(logging.ERROR)
    token = last_error.set(None)
    try:
        assert dispatch.route_signal_to_replica_model('SAVE', 'basic', dict(DATA)) is None
        assert dispatch.is_query_timeout(last_error.get(), 'postgresql')
    finally:
        last_error.reset(token)
        with connection.cursor() as cursor:
            cursor.execute('SET statement_timeout TO 0')
    records = [r for r in caplog.records if r.name == 'slow-queries']
    assert [r.getMessage() for r in records] == ['Timed out query:\nSELECT pg_sleep(0.5)']


@pytest.mark.django_db(transaction=True)
@override_settings(CQRS={**SETTINGS, 'replica': {'CQRS_QUERY_TIMEOUT': 0}})
def test_no_timeout_by_default_and_nothing_set(monkeypatch) -> None:
    statements: list[str] = []
    monkeypatch.setattr(m.BasicReplica, 'cqrs_save', classmethod(lambda cls, data, **kw: True))
    with connection.execute_wrapper(lambda execute, sql, *a: statements.append(sql) or execute(sql, *a)):
        assert dispatch.route_signal_to_replica_model('SAVE', 'basic', dict(DATA))
    assert not any('statement_timeout' in sql for sql in statements)


@pytest.fixture
def mariadb(django_db_blocker: Any) -> Iterator[str]:
    with (
        services.mariadb_settings('cqrs_qt') as config,
        services.django_alias('mariadb_timeouts', config) as alias,
        django_db_blocker.unblock(),  # a database of the test's own, outside pytest-django's
    ):
        yield alias


@override_settings(CQRS=SETTINGS)
def test_mariadb_max_statement_time_is_applied_and_recognised(mariadb, monkeypatch, caplog) -> None:
    monkeypatch.setattr(dispatch, 'replica_db', lambda model: mariadb)
    conn = connections[mariadb]
    assert conn.vendor == 'mysql' and conn.mysql_is_mariadb
    dispatch.apply_query_timeouts(m.BasicReplica)
    caplog.set_level(logging.ERROR)
    with pytest.raises(Exception) as excinfo, conn.cursor() as cursor:
        cursor.execute('SELECT SLEEP(0.5) FROM (SELECT 1) AS t WHERE 1 = 1')
        cursor.fetchall()
    error = excinfo.value
    assert dispatch.is_query_timeout(error, 'mysql'), repr(error)
    dispatch.log_timed_out_queries(error, m.BasicReplica)
    records = [r.getMessage() for r in caplog.records if r.name == 'slow-queries']
    assert records == ['Timed out query:\nSELECT SLEEP(0.5) FROM (SELECT 1) AS t WHERE 1 = 1']
