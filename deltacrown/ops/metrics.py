"""GET /metrics: Prometheus text format, read from Redis and the database at scrape
time by a custom collector, so every web process answers the same numbers however
many web and worker processes there are (nothing is counted in process memory).

Job counters and durations come from the run records in deltacrown.ops.stats
(monotonic totals kept in Redis); queue and registry sizes and workers from RQ's
APIs; deliveries and the outbox backlog from the database. A part that cannot be
read is reported by deltacrown_up{component=...} 0 and its metrics are left out.

Computing it costs a dozen Redis reads and several aggregate queries, so the rendered
text is kept in Redis for METRICS_CACHE_SECONDS (10 s): scrapes in between, from any
web process, read no database at all. With METRICS_TOKEN set, a scrape must carry
`Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..extensions import db
from ..notifications.models import DELIVERY_STATUSES
from ..queue import get_redis
from ..timeutil import utcnow
from . import delivery_rates, overview, stats

log = logging.getLogger(__name__)

CACHE_KEY = "deltacrown:metrics"

bp = Blueprint("metrics", __name__)


class DeltaCrownCollector(Collector):
    """Collects at scrape time; must be called inside an app context."""

    def collect(self):
        up = GaugeMetricFamily("deltacrown_up", "1 when the component could be read at scrape time",
                               labels=["component"])
        redis_ok = db_ok = True
        try:
            yield from self._redis_metrics(get_redis())
        except Exception:  # noqa: BLE001 - redis raises several connection error types
            log.warning("metrics: Redis read failed", exc_info=True)
            redis_ok = False
        try:
            yield from self._database_metrics()
        except Exception:  # noqa: BLE001
            db.session.rollback()
            log.warning("metrics: database read failed", exc_info=True)
            db_ok = False
        up.add_metric(["redis"], 1 if redis_ok else 0)
        up.add_metric(["db"], 1 if db_ok else 0)
        yield up

    def _redis_metrics(self, connection):
        # Read everything first so a failure halfway yields nothing half-done.
        now = utcnow()
        queues = overview.queues(connection, now)
        workers = overview.workers(connection, now)
        totals = stats.job_totals(connection)

        length = GaugeMetricFamily("deltacrown_queue_length", "Jobs waiting in the queue", labels=["queue"])
        oldest = GaugeMetricFamily("deltacrown_queue_oldest_job_age_seconds",
                                   "Age of the oldest waiting job (0 when empty)", labels=["queue"])
        registry = GaugeMetricFamily("deltacrown_queue_registry_jobs", "Jobs in an RQ registry",
                                     labels=["queue", "registry"])
        for q in queues:
            length.add_metric([q.name], q.length)
            oldest.add_metric([q.name], q.oldest_age or 0)
            registry.add_metric([q.name, "started"], q.started)
            registry.add_metric([q.name, "failed"], q.failed)
            registry.add_metric([q.name, "scheduled"], q.scheduled)
        failed = GaugeMetricFamily("deltacrown_failed_jobs", "Jobs in the failed job registries (all queues)")
        failed.add_metric([], sum(q.failed for q in queues))

        worker_count = GaugeMetricFamily("deltacrown_workers", "RQ workers with a recent heartbeat, by state",
                                         labels=["state"])
        states: dict[str, int] = {}
        for w in workers:
            if w.alive:
                states[w.state] = states.get(w.state, 0) + 1
        for state in sorted(set(states) | {"busy", "idle"}):
            worker_count.add_metric([state], states.get(state, 0))

        runs = CounterMetricFamily("deltacrown_jobs", "Job runs by job function and outcome",
                                   labels=["job", "status"])
        durations = HistogramMetricFamily("deltacrown_job_duration_seconds", "Job run durations",
                                          labels=["job"])
        for func in sorted(totals):
            t = totals[func]
            runs.add_metric([func, "finished"], t.finished)
            runs.add_metric([func, "failed"], t.failed)
            count = t.finished + t.failed
            buckets = [(repr(b), t.buckets.get(b, 0)) for b in stats.DURATION_BUCKETS] + [("+Inf", count)]
            durations.add_metric([func], buckets, t.seconds)
        yield from (length, oldest, registry, failed, worker_count, runs, durations)

    def _database_metrics(self):
        channels = overview.deliveries_by_channel()
        backlog = overview.outbox_backlog()
        deliveries = GaugeMetricFamily("deltacrown_deliveries", "Delivery rows by channel and status",
                                       labels=["channel", "status"])
        retried = GaugeMetricFamily("deltacrown_deliveries_retried", "Deliveries that needed more than one attempt",
                                    labels=["channel"])
        for c in channels:
            for status in DELIVERY_STATUSES:
                deliveries.add_metric([c.channel, status], getattr(c, status))
            retried.add_metric([c.channel], c.retried)
        outbox = GaugeMetricFamily("deltacrown_outbox_backlog", "Outbox events not yet relayed to the queue")
        outbox.add_metric([], backlog.waiting)
        outbox_age = GaugeMetricFamily("deltacrown_outbox_oldest_age_seconds",
                                       "Age of the oldest unrelayed outbox event (0 when none)")
        outbox_age.add_metric([], backlog.oldest_age or 0)
        yield from (deliveries, retried, outbox, outbox_age)
        yield from self._rate_metrics()

    def _rate_metrics(self):
        """The seed's targets over the last 24 hours and 7 days (ops.delivery_rates)."""
        rates = delivery_rates.delivery_rates()
        counts = GaugeMetricFamily("deltacrown_email", "Emails sent, bounced, complained about and suppressed "
                                   "in the window", labels=["window", "outcome"])
        ratios = GaugeMetricFamily("deltacrown_delivery_rate", "Email bounce and complaint rate, Discord webhook "
                                   "success rate in the window (absent: nothing sent)", labels=["window", "rate"])
        for window in rates.windows:
            name = "24h" if window.label == "24 hours" else "7d"
            for outcome in ("sent", "bounced", "complained", "suppressed"):
                counts.add_metric([name, outcome], getattr(window, "email_sent" if outcome == "sent" else outcome))
            for rate, value in (("email_bounce", window.bounce_rate), ("email_complaint", window.complaint_rate),
                                ("discord_success", window.discord_success)):
                if value is not None:
                    ratios.add_metric([name, rate], value)
        targets = GaugeMetricFamily("deltacrown_delivery_rate_target", "The seed's levels: email bounce rate "
                                    "alert at or over, Discord success ok over", labels=["rate"])
        targets.add_metric(["email_bounce"], delivery_rates.BOUNCE_RATE_ALERT)
        targets.add_metric(["discord_success"], delivery_rates.DISCORD_SUCCESS_OK)
        yield from (counts, ratios, targets)


@bp.get("/metrics")
def metrics():
    if not _authorized(request.headers.get("Authorization", "")):
        return Response("Send 'Authorization: Bearer <METRICS_TOKEN>'.\n", 401, content_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(_cached_text(), content_type=CONTENT_TYPE_LATEST)  # it names its charset already


def _authorized(header: str) -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return True
    scheme, _, given = header.partition(" ")
    # Digests of equal length, compared in constant time: neither the token's content nor
    # its length leaks through the answer's timing.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest())


def _cached_text() -> bytes:
    seconds = current_app.config.get("METRICS_CACHE_SECONDS", 10)
    connection = None
    if seconds:
        try:
            connection = get_redis()
            cached = connection.get(CACHE_KEY)
        except Exception:  # noqa: BLE001 - no Redis: compute each time (deltacrown_up says so)
            connection = cached = None
        if cached is not None:
            return cached
    text = _render()
    if connection is not None:
        try:
            connection.set(CACHE_KEY, text, ex=seconds)
        except Exception:  # noqa: BLE001
            log.warning("metrics: could not cache the scrape in Redis", exc_info=True)
    return text


def _render() -> bytes:
    # A registry per scrape: the collector holds no state, and tests build many apps.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeltaCrownCollector())
    return generate_latest(registry)
