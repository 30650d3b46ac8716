"""`GET /metrics` in Prometheus text format, correct under several gunicorn workers.

Webhook counters live in the web processes: with `PROMETHEUS_MULTIPROC_DIR` set (as
`deskmark web` does) they are summed across gunicorn workers. Everything the workers know (jobs
by outcome, edit latency, spend, queue depth, dead letters) is kept in Redis and read at scrape
time, because the workers may run on other hosts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from integrations.config import Settings
from worker.limits import EditGate
from worker.store import EDIT_BUCKETS, Store

__all__ = ["WEBHOOKS", "render", "outcome"]

WEBHOOKS = Counter("deskmark_webhooks", "Webhook requests received, by vendor and outcome",
                   ["vendor", "outcome"])

OUTCOMES = {202: "enqueued", 200: "ignored", 400: "malformed", 401: "unauthorized",
            404: "not_configured", 413: "too_large", 503: "unavailable"}


def outcome(status: int) -> str:
    return OUTCOMES.get(status, str(status))


class RedisCollector(Collector):
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        data = self.store.metrics()
        jobs = CounterMetricFamily("deskmark_jobs", "Photo jobs that ended, by final state",
                                   labels=["state"])
        for state in ("done", "skipped", "failed"):
            jobs.add_metric([state], data["jobs"].get(state, 0))
        yield jobs
        edits = data["edit_seconds"]
        buckets = [(str(float(le)), edits.get(str(le), 0.0)) for le in EDIT_BUCKETS]
        buckets.append(("+Inf", edits.get("+Inf", 0.0)))
        yield HistogramMetricFamily("deskmark_edit_seconds", "Duration of image edit calls",
                                    buckets=buckets, sum_value=edits.get("sum", 0.0))
        yield CounterMetricFamily("deskmark_spend_usd", "USD spent on model calls",
                                  value=data["spend_usd_total"])
        yield GaugeMetricFamily("deskmark_spend_today_usd", "USD spent today (UTC)",
                                value=EditGate(self.store, self.settings).spent())
        yield GaugeMetricFamily("deskmark_daily_budget_usd", "DESKMARK_DAILY_BUDGET_USD",
                                value=self.settings.daily_budget_usd)
        yield GaugeMetricFamily("deskmark_queue_depth", "Messages waiting in the queue",
                                value=data["queue_depth"])
        yield GaugeMetricFamily("deskmark_dead_letters", "Jobs and events in the dead-letter list",
                                value=data["dead_letters"])
        yield GaugeMetricFamily("deskmark_worker_up", "1 if a worker heartbeat was seen in 45 s",
                                value=1.0 if data["worker_up"] else 0.0)


def render(store: Store, settings: Settings) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collector: Any = multiprocess.MultiProcessCollector  # untyped in prometheus_client
        collector(registry)
    else:
        registry.register(WEBHOOKS)
    registry.register(RedisCollector(store, settings))
    return generate_latest(registry)
