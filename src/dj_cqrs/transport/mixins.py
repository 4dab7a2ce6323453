"""``LoggingMixin`` (upstream ``dj_cqrs.transport.mixins``): the transports' lifecycle log lines."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger('django-cqrs')


class LoggingMixin:
    @staticmethod
    def log_consumed(payload: Any) -> None:
        logger.info(
            'CQRS is received: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )

    @staticmethod
    def log_consumed_accepted(payload: Any) -> None:
        logger.info(
            'CQRS is applied: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )

    @staticmethod
    def log_consumed_denied(payload: Any) -> None:
        logger.warning(
            'CQRS is denied: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )

    @staticmethod
    def log_consumed_failed(payload: Any) -> None:
        logger.warning(
            'CQRS is failed: pk = %s (%s), correlation_id = %s, retries = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
            payload.retries,
        )

    @staticmethod
    def log_dead_letter(payload: Any) -> None:
        logger.warning(
            'CQRS is added to dead letter queue: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )

    @staticmethod
    def log_delayed(payload: Any, delay: Any, eta: Any) -> None:
        logger.warning(
            'CQRS is delayed: pk = %s (%s), correlation_id = %s, delay = %s sec, eta = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
            delay,
            eta,
        )

    @staticmethod
    def log_requeued(payload: Any) -> None:
        logger.warning(
            'CQRS is requeued: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )

    @staticmethod
    def log_produced(payload: Any) -> None:
        logger.info(
            'CQRS is published: pk = %s (%s), correlation_id = %s.',
            payload.pk,
            payload.cqrs_id,
            payload.correlation_id,
        )
