"""Public constants of the upstream ``dj_cqrs.constants`` module."""

from __future__ import annotations

from dj_cqrs.conf import (
    DEFAULT_DEAD_MESSAGE_TTL,
    DEFAULT_MASTER_AUTO_UPDATE_FIELDS,
    DEFAULT_MASTER_MESSAGE_TTL,
    DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE,
    DEFAULT_REPLICA_MAX_RETRIES,
    DEFAULT_REPLICA_RETRY_DELAY,
)
from dj_cqrs.core import events


class SignalType:
    """Type of signal that generates this event."""

    SAVE = events.SAVE
    DELETE = events.DELETE
    SYNC = events.SYNC


ALL_BASIC_FIELDS = '__all__'
NO_QUEUE = 'None'

FIELDS_TRACKER_FIELD_NAME = '__fields_tracker'
TRACKED_FIELDS_ATTR_NAME = '__tracked_fields'

DB_VENDOR_PG = 'postgresql'
DB_VENDOR_MYSQL = 'mysql'
SUPPORTED_TIMEOUT_DB_VENDORS = {DB_VENDOR_MYSQL, DB_VENDOR_PG}

PG_TIMEOUT_FLAG = 'statement timeout'
MYSQL_TIMEOUT_ERROR_CODE = 3024
#: ER_STATEMENT_TIMEOUT: MariaDB's max_statement_time exceeded.
MARIADB_TIMEOUT_ERROR_CODE = 1969

__all__ = [
    'ALL_BASIC_FIELDS',
    'DB_VENDOR_MYSQL',
    'DB_VENDOR_PG',
    'DEFAULT_DEAD_MESSAGE_TTL',
    'DEFAULT_MASTER_AUTO_UPDATE_FIELDS',
    'DEFAULT_MASTER_MESSAGE_TTL',
    'DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE',
    'DEFAULT_REPLICA_MAX_RETRIES',
    'DEFAULT_REPLICA_RETRY_DELAY',
    'FIELDS_TRACKER_FIELD_NAME',
    'MARIADB_TIMEOUT_ERROR_CODE',
    'MYSQL_TIMEOUT_ERROR_CODE',
    'NO_QUEUE',
    'PG_TIMEOUT_FLAG',
    'SUPPORTED_TIMEOUT_DB_VENDORS',
    'TRACKED_FIELDS_ATTR_NAME',
    'SignalType',
]
