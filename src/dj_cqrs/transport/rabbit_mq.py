"""``RabbitMQTransport`` (upstream path ``dj_cqrs.transport.rabbit_mq``), backed by pika."""

from __future__ import annotations

from typing import ClassVar

from dj_cqrs.conf import cqrs_settings
from dj_cqrs.transport.base import Broker
from dj_cqrs.transport.bridge import BrokerTransport
from dj_cqrs.transport.mixins import LoggingMixin


class RabbitMQTransport(LoggingMixin, BrokerTransport):
    """RabbitMQ through pika: ``url`` (``amqp://`` or ``amqps://``, vhost and query options
    honoured) or the legacy ``host`` / ``port`` / ``user`` / ``password`` keys."""

    CONSUMER_RETRY_TIMEOUT: ClassVar[int] = 5
    PRODUCER_RETRIES: ClassVar[int] = 1

    @classmethod
    def create_broker(cls) -> Broker:
        from dj_cqrs.transport.rabbitmq import RabbitMQBroker

        raw = cqrs_settings.raw
        if raw.get('url'):
            return RabbitMQBroker(url=raw['url'], exchange=cqrs_settings.exchange)
        return RabbitMQBroker(
            host=raw.get('host'),
            port=raw.get('port'),
            user=raw.get('user'),
            password=raw.get('password'),
            exchange=cqrs_settings.exchange,
        )
