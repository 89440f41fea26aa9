"""GET /healthz: is this deployment able to do its work?

200 {"db": "ok", "redis": "ok", "workers": N, "scheduler": "ok"} when the database
answers SELECT 1, Redis answers PING, at least one RQ worker has beaten recently and
the scheduler's heartbeat is fresh (younger than SCHEDULER_HEARTBEAT_STALE_SECONDS).
Otherwise 503 with the same keys, each failing part saying "down" (or 0 workers),
and "down": the list of what is down. Zero live workers counts as down: jobs
(notifications, payouts) would pile up unprocessed, which is what a health check
must reveal; so does a dead or stuck scheduler (no recurring job would run: no
outbox sweep, digests or wrap-ups). With Redis down the scheduler counts as down too.
No login (load balancers and uptime checks call it); no secrets in the body.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import db
from ..queue import get_redis
from . import overview

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def check_health() -> tuple[dict, list[str]]:
    body, down = {}, []
    try:
        db.session.execute(text("SELECT 1"))
        body["db"] = "ok"
    except Exception:  # noqa: BLE001 - any driver error means the database is down for us
        db.session.rollback()
        log.warning("healthz: database check failed", exc_info=True)
        body["db"] = "down"
        down.append("db")
    workers, scheduler = 0, "down"
    try:
        connection = get_redis()
        connection.ping()
        body["redis"] = "ok"
        workers = overview.live_worker_count(connection)
        scheduler = overview.scheduler_state(
            connection, current_app.config["SCHEDULER_HEARTBEAT_STALE_SECONDS"]).status
    except Exception:  # noqa: BLE001 - redis raises several connection error types
        log.warning("healthz: Redis check failed", exc_info=True)
        body["redis"] = "down"
        down.append("redis")
    body["workers"] = workers
    if workers == 0:
        down.append("workers")
    body["scheduler"] = scheduler
    if scheduler != "ok":
        down.append("scheduler")
    return body, down


@bp.get("/healthz")
def healthz():
    body, down = check_health()
    if down:
        body["down"] = down
    response = jsonify(body)
    response.status_code = 503 if down else 200
    response.headers["Cache-Control"] = "no-store"
    return response
