"""Prometheus metrics (optional; needs ``pip install 'django-cqrs[prometheus]'``).

Call :func:`install` once per process, for example in an ``AppConfig.ready()``; it connects
receivers to the lifecycle signals of :mod:`dj_cqrs.signals` and registers a collector:

* ``dj_cqrs_events_published_total{cqrs_id}``: events the broker confirmed (master);
* ``dj_cqrs_events_publish_failed_total{cqrs_id}``: events the broker did not confirm (master;
  with the outbox on they stay there and are published again by the relay);
* ``dj_cqrs_events_applied_total{cqrs_id}``: events a replica applied;
* ``dj_cqrs_events_skipped_total{cqrs_id,reason}``: events a replica acknowledged without applying
  them (``older revision``, ``duplicate revision``, ``deleted row``, ``stale sync``, ``stale delete``);
* ``dj_cqrs_events_dead_lettered_total{cqrs_id}``: messages a replica sent to its dead-letter
  queue (``cqrs_id`` is ``-`` for a body that could not be decoded);
* ``dj_cqrs_outbox_backlog{database}`` and ``dj_cqrs_outbox_oldest_age_seconds{database}``: the
  undelivered outbox events, read from the database when scraped (master).

Expose them with :func:`metrics_view` (a Django view) or ``prometheus_client.start_http_server``
(a consumer process has no web server). With several worker processes (``cqrs_consume -w N``),
use prometheus_client's multiprocess mode, as for any pre-forking server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "dj_cqrs.metrics needs prometheus-client: pip install 'django-cqrs[prometheus]'"
    ) from exc

from dj_cqrs import signals

__all__ = ['Metrics', 'OutboxCollector', 'install', 'metrics_view', 'uninstall']

NO_CQRS_ID = '-'


def _cqrs_id(payload: Any) -> str:
    return str(getattr(payload, 'cqrs_id', None) or NO_CQRS_ID)


class OutboxCollector:
    """Reads the outbox backlog of the given databases (default: all) at each scrape."""

    def __init__(self, databases: Sequence[str] | None = None) -> None:
        self.databases = list(databases) if databases else None

    def describe(self) -> list[Any]:
        # Not [] : an empty describe() makes the registry call collect() at registration, which
        # would query the database at import time.
        return [
            GaugeMetricFamily(
                'dj_cqrs_outbox_backlog', 'Undelivered CQRS outbox events', labels=['database']
            ),
            GaugeMetricFamily(
                'dj_cqrs_outbox_oldest_age_seconds',
                'Age of the oldest undelivered CQRS outbox event',
                labels=['database'],
            ),
        ]

    def collect(self) -> Iterator[Any]:
        from dj_cqrs.ops.status import master_status

        backlog, age = self.describe()
        for outbox in master_status(self.databases).outboxes:
            if outbox.error or outbox.count is None:
                continue
            backlog.add_metric([outbox.database], outbox.count)
            age.add_metric([outbox.database], outbox.oldest_age or 0.0)
        yield backlog
        yield age


class Metrics:
    """The counters, and the signal receivers that drive them."""

    def __init__(self, registry: CollectorRegistry, databases: Sequence[str] | None = None) -> None:
        self.registry = registry
        self.published = Counter(
            'dj_cqrs_events_published', 'CQRS events confirmed by the broker', ['cqrs_id'], registry=registry
        )
        self.publish_failed = Counter(
            'dj_cqrs_events_publish_failed',
            'CQRS events the broker did not confirm',
            ['cqrs_id'],
            registry=registry,
        )
        self.applied = Counter(
            'dj_cqrs_events_applied', 'CQRS events applied by the replica', ['cqrs_id'], registry=registry
        )
        self.skipped = Counter(
            'dj_cqrs_events_skipped',
            'CQRS events acknowledged without applying them',
            ['cqrs_id', 'reason'],
            registry=registry,
        )
        self.dead_lettered = Counter(
            'dj_cqrs_events_dead_lettered',
            'CQRS messages sent to the dead-letter queue',
            ['cqrs_id'],
            registry=registry,
        )
        self.outbox = OutboxCollector(databases)
        registry.register(self.outbox)
        self._receivers = [
            (signals.event_published, self._on_published),
            (signals.event_publish_failed, self._on_publish_failed),
            (signals.event_applied, self._on_applied),
            (signals.event_skipped, self._on_skipped),
            (signals.event_dead_lettered, self._on_dead_lettered),
        ]
        for signal, receiver in self._receivers:
            signal.connect(
                receiver, weak=False, dispatch_uid=f'dj_cqrs.metrics.{id(self)}.{receiver.__name__}'
            )

    def disconnect(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver, dispatch_uid=f'dj_cqrs.metrics.{id(self)}.{receiver.__name__}')
        try:
            self.registry.unregister(self.outbox)
        except KeyError:
            pass
        for counter in (self.published, self.publish_failed, self.applied, self.skipped, self.dead_lettered):
            try:
                self.registry.unregister(counter)
            except KeyError:
                pass

    def _on_published(self, sender: Any, payload: Any = None, **kwargs: Any) -> None:
        self.published.labels(_cqrs_id(payload)).inc()

    def _on_publish_failed(self, sender: Any, payload: Any = None, **kwargs: Any) -> None:
        self.publish_failed.labels(_cqrs_id(payload)).inc()

    def _on_applied(self, sender: Any, payload: Any = None, **kwargs: Any) -> None:
        self.applied.labels(_cqrs_id(payload)).inc()

    def _on_skipped(self, sender: Any, payload: Any = None, reason: Any = None, **kwargs: Any) -> None:
        self.skipped.labels(_cqrs_id(payload), str(reason or '')).inc()

    def _on_dead_lettered(self, sender: Any, payload: Any = None, **kwargs: Any) -> None:
        self.dead_lettered.labels(_cqrs_id(payload)).inc()


_installed: dict[int, Metrics] = {}
_lock = threading.Lock()


def install(registry: CollectorRegistry | None = None, databases: Sequence[str] | None = None) -> Metrics:
    """Create the metrics in ``registry`` (default: prometheus_client's global one) and connect them
    to the signals. Calling it again with the same registry returns the same :class:`Metrics`."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        metrics = _installed.get(id(registry))
        if metrics is None:
            metrics = _installed[id(registry)] = Metrics(registry, databases)
        return metrics


def uninstall(registry: CollectorRegistry | None = None) -> None:
    """Disconnect and unregister what :func:`install` created in ``registry``."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        metrics = _installed.pop(id(registry), None)
    if metrics is not None:
        metrics.disconnect()


def metrics_view(request: Any, registry: CollectorRegistry | None = None) -> Any:
    """A Django view in the Prometheus text format: ``path('metrics', metrics_view)``."""
    from django.http import HttpResponse

    return HttpResponse(
        generate_latest(REGISTRY if registry is None else registry), content_type=CONTENT_TYPE_LATEST
    )
