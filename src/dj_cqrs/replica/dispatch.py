"""Routing a received event to its replica model (UPSTREAM_SPEC §6.1, §6.7)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.db import DatabaseError, OperationalError, connections, router, transaction

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.constants import (
    DB_VENDOR_MYSQL,
    DB_VENDOR_PG,
    MARIADB_TIMEOUT_ERROR_CODE,
    MYSQL_TIMEOUT_ERROR_CODE,
    PG_TIMEOUT_FLAG,
    SUPPORTED_TIMEOUT_DB_VENDORS,
    SignalType,
)
from dj_cqrs.core.events import SIGNAL_TYPES
from dj_cqrs.registry import ReplicaRegistry
from dj_cqrs.replica.managers import last_error

logger = logging.getLogger('django-cqrs')


def replica_db(model: Any) -> str:
    return router.db_for_write(model) if hasattr(model, '_meta') else 'default'


def keep_connections_usable() -> None:
    """Close only broken connections (a database restart); keep healthy ones across messages.

    Upstream calls ``close_old_connections()`` per message, which with the default
    ``CONN_MAX_AGE=0`` opens a new database connection for every message.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            if conn.errors_occurred and not conn.is_usable():
                conn.close()
            conn.errors_occurred = False


def route_signal_to_replica_model(
    signal_type: str,
    cqrs_id: str,
    instance_data: Any,
    previous_data: Any = None,
    meta: Any = None,
    queue: str | None = None,
    *,
    reuse_connections: bool = False,
) -> Any:
    """Apply one event; return the handler's result (truthy: applied or skipped on purpose)."""
    if signal_type not in SIGNAL_TYPES:
        logger.error('Bad signal type "%s" for CQRS_ID "%s".', signal_type, cqrs_id)
        return None
    model = ReplicaRegistry.get_model_by_cqrs_id(cqrs_id)
    if model is None:
        return None
    if signal_type == SignalType.SYNC and model.CQRS_ONLY_DIRECT_SYNCS and queue != cqrs_settings.queue:
        return True

    uses_db = not model.CQRS_NO_DB_OPERATIONS
    db = replica_db(model)
    if uses_db:
        if reuse_connections:
            keep_connections_usable()
        else:
            from django.db import close_old_connections

            close_old_connections()
        apply_query_timeouts(model)

    kwargs: dict[str, Any] = {}
    if model.CQRS_META:
        kwargs['meta'] = meta
    try:
        with transaction.atomic(using=db, savepoint=False) if uses_db else contextlib.nullcontext():
            if signal_type == SignalType.DELETE:
                return model.cqrs_delete(instance_data, **kwargs)
            if signal_type == SignalType.SYNC:
                return model.cqrs_save(instance_data, previous_data=previous_data, sync=True, **kwargs)
            return model.cqrs_save(instance_data, previous_data=previous_data, **kwargs)
    except DatabaseError as exc:
        data = instance_data if isinstance(instance_data, dict) else {}
        pk_name = model._meta.pk.name if hasattr(model, '_meta') and model._meta.pk else 'id'
        logger.error(
            '%s\nCQRS %s error: pk = %s, cqrs_revision = %s (%s).',
            exc,
            signal_type,
            data.get(pk_name),
            data.get('cqrs_revision'),
            cqrs_id,
        )
        if cqrs_settings.replica.log_timed_out_queries:
            log_timed_out_queries(exc, model)
        last_error.set(exc)
        return None


# -- query timeouts (§6.7) -----------------------------------------------------------------------
_LAST_QUERY_ATTR = '_cqrs_last_query'


def _capture_last_query(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    context['connection']._cqrs_last_query = sql
    return execute(sql, params, many, context)


def install_last_query_capturer(model: Any) -> None:
    conn = connections[replica_db(model)]
    if _capture_last_query not in conn.execute_wrappers:
        conn.execute_wrappers.append(_capture_last_query)


def apply_query_timeouts(model: Any) -> None:
    timeout = cqrs_settings.replica.query_timeout
    if timeout <= 0:
        return
    conn = connections[replica_db(model)]
    if conn.vendor not in SUPPORTED_TIMEOUT_DB_VENDORS:
        return
    value: float = timeout
    if conn.vendor == DB_VENDOR_PG:
        statement = 'SET statement_timeout TO %s'
    elif getattr(conn, 'mysql_is_mariadb', False):
        # MariaDB has no MAX_EXECUTION_TIME (upstream's MySQL statement fails there); its limit is
        # max_statement_time, in seconds.
        statement, value = 'SET SESSION max_statement_time=%s', timeout / 1000
    else:
        statement = 'SET SESSION MAX_EXECUTION_TIME=%s'
    with conn.cursor() as cursor:
        cursor.execute(statement, [value])
    install_last_query_capturer(model)


def is_query_timeout(error: BaseException, vendor: str) -> bool:
    if not isinstance(error, OperationalError) or not error.args:
        return False
    first = error.args[0]
    if vendor == DB_VENDOR_MYSQL:
        return first in (MYSQL_TIMEOUT_ERROR_CODE, MARIADB_TIMEOUT_ERROR_CODE)
    if vendor == DB_VENDOR_PG:
        return isinstance(first, str) and PG_TIMEOUT_FLAG in first
    return False


def log_timed_out_queries(error: BaseException, model: Any) -> None:
    if not cqrs_settings.replica.log_timed_out_queries:
        return
    conn = connections[replica_db(model)]
    if conn.vendor not in SUPPORTED_TIMEOUT_DB_VENDORS or not is_query_timeout(error, conn.vendor):
        return
    logging.getLogger(cqrs_settings.replica.query_logger).error(
        'Timed out query:\n%s', getattr(conn, _LAST_QUERY_ATTR, None)
    )
