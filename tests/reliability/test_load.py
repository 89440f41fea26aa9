"""Load: 50 concurrent API clients against gunicorn (4 workers) and 2 RQ worker processes.

Each client is a team captain with a partner player, on its own requests.Session
with Bearer tokens, looping: invite the partner (a domain write and an outbox
event), read the captain's notifications and unread count, the partner reads
theirs and declines the invite (a second write). After RELIABILITY_LOAD_SECONDS
(default 60, the issue's figure) the queue is drained: no answer was
a 5xx (or a dropped connection), every outbox event was handled, and every
invite that was answered 201 became exactly one notification for its invitee.
Latency p50/p99 of the requests, of each event (commit → handled, i.e. the in-app
notification committed) and the drain time (every event handled, every send made) are
printed and recorded for RELIABILITY.md.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, defaultdict

import pytest
import requests
from rq import Worker
from sqlalchemy import func, select

from deltacrown.accounts.services import create_user
from deltacrown.extensions import db
from deltacrown.notifications.models import Delivery, Notification
from deltacrown.outbox.models import OutboxEvent
from deltacrown.queue import get_redis
from deltacrown.teams.services import create_team
from tests.support.processes import PYTHON, wait_for

from .conftest import env_int, record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

CLIENTS = env_int("RELIABILITY_LOAD_CLIENTS", 50)
SECONDS = env_int("RELIABILITY_LOAD_SECONDS", 60)
WEB_WORKERS = env_int("RELIABILITY_WEB_WORKERS", 4)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def test_fifty_clients_get_no_5xx_and_lose_no_notification(rapp, worker_env, spawn, start_web):
    with rapp.app_context():
        pairs = []
        for i in range(CLIENTS):
            captain, captain_token, _ = create_user(f"cap{i}", f"cap{i}@example.com", password="load-password")
            partner, partner_token, _ = create_user(f"mate{i}", f"mate{i}@example.com", password="load-password")
            team = create_team(f"Load {i}", captain.id)
            pairs.append((team.id, captain_token, partner.id, partner_token))

    env = worker_env()
    server = start_web(env, workers=WEB_WORKERS)
    web, base = server.proc, server.api
    workers = [spawn([PYTHON, "worker.py"], env=env, name=f"worker-{n}") for n in (1, 2)]
    # The load meets running workers, as in production: a worker's start-up (a second or two
    # here) is not an event's latency.
    redis = get_redis(rapp)
    wait_for(lambda: {w.pid for w in Worker.all(connection=redis)} >= {w.pid for w in workers}, timeout=60,
             message="both workers to register with Redis")

    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    errors: list[str] = []
    invited: list[tuple[int, int]] = []  # (invite id, invitee id) answered 201
    lock = threading.Lock()
    start_line = threading.Barrier(CLIENTS)
    stop_at = [0.0]

    def client(team_id, captain_token, partner_id, partner_token):
        captain = requests.Session()
        captain.headers["Authorization"] = f"Bearer {captain_token}"
        partner = requests.Session()
        partner.headers["Authorization"] = f"Bearer {partner_token}"

        def call(session, kind, method, path, **kwargs):
            began = time.monotonic()
            try:
                response = session.request(method, base + path, timeout=120, **kwargs)
            except requests.RequestException as exc:
                with lock:
                    errors.append(f"{kind}: {exc!r}")
                    statuses["no answer"] += 1
                return None
            with lock:
                latencies[kind].append(time.monotonic() - began)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    errors.append(f"{kind}: {response.status_code} {response.text[:200]}")
            return response

        start_line.wait(60)
        while time.monotonic() < stop_at[0]:
            invite = call(captain, "invite (write)", "POST", f"/teams/{team_id}/invites", json={"user_id": partner_id})
            call(captain, "notifications (read)", "GET", "/notifications?limit=20")
            call(partner, "unread-count (read)", "GET", "/notifications/unread-count")
            call(partner, "notifications (read)", "GET", "/notifications?unread=true")
            if invite is not None and invite.status_code == 201:
                invite_id = invite.json()["id"]
                with lock:
                    invited.append((invite_id, partner_id))
                call(partner, "decline (write)", "POST", f"/invites/{invite_id}/decline")

    threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in pairs]
    stop_at[0] = time.monotonic() + SECONDS + 5  # adjusted at the start line below
    for t in threads:
        t.start()
    began = time.monotonic()
    stop_at[0] = began + SECONDS
    for t in threads:
        t.join(SECONDS + 300)
    elapsed = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert web.is_running(), web.output()[-3000:]

    # Drain: every event handled and every send made by the two workers.
    def drained():
        for w in workers:
            assert w.is_running(), w.output()[-3000:]
        with rapp.app_context():
            left = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                     .where(OutboxEvent.handled_at.is_(None)))
            left += db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
            db.session.rollback()
        return left == 0

    drain_began = time.monotonic()
    wait_for(drained, timeout=300, message="every outbox event to be handled after the load")
    drain_seconds = time.monotonic() - drain_began

    with rapp.app_context():
        events = {e.payload["invite_id"]: e.id for e in db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "invite_sent"))}
        per_key = Counter(db.session.execute(
            select(Notification.user_id, Notification.dedup_key).where(Notification.type == "invite_sent")).all())
    # Freshness during the load: commit (created_at, in the write's transaction) → handled
    # (handled_at, committed with or after the notifications), for the events of the load window.
    with rapp.app_context():
        freshness = [(handled - created).total_seconds() for created, handled in db.session.execute(
            select(OutboxEvent.created_at, OutboxEvent.handled_at)).all()]
        db.session.rollback()
    lost = sum(1 for invite_id, user_id in invited
               if invite_id not in events or per_key[(user_id, f"event:{events[invite_id]}")] != 1)
    doubled = sum(1 for n in per_key.values() if n > 1)

    every = [v for values in latencies.values() for v in values]
    summary = {kind: {"requests": len(v), "p50_ms": round(statistics.median(v) * 1000),
                      "p99_ms": round(percentile(v, 0.99) * 1000)} for kind, v in sorted(latencies.items())}
    figures = dict(clients=CLIENTS, seconds=SECONDS, web_workers=WEB_WORKERS, rq_workers=len(workers),
                   requests=len(every), requests_per_second=round(len(every) / elapsed, 1),
                   p50_ms=round(statistics.median(every) * 1000), p99_ms=round(percentile(every, 0.99) * 1000),
                   statuses={str(k): v for k, v in sorted(statuses.items(), key=str)}, server_errors=len(errors),
                   invites=len(invited), notifications_lost=lost, notifications_doubled=doubled,
                   drain_seconds=round(drain_seconds, 1), events=len(freshness),
                   event_to_in_app_p50_ms=round(statistics.median(freshness) * 1000),
                   event_to_in_app_p99_ms=round(percentile(freshness, 0.99) * 1000), by_kind=summary)
    record_figures("load", **figures)
    assert not errors, errors[:10]
    assert set(statuses) <= {200, 201}, statuses
    assert len(invited) > 0 and lost == 0 and doubled == 0
