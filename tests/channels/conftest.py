"""Channel tests: the app points at the loopback SMTP and Discord stand-ins.

Delivery rows are created directly here (the pipeline creates them in production).
"""
from __future__ import annotations

import itertools

import pytest

from deltacrown.config import PROJECT_ROOT
from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification
from deltacrown.timeutil import utcnow
from tests.support.browser import WorkerProcess


@pytest.fixture
def app_config(smtp_server, discord_server):
    return {**smtp_server.config(), **discord_server.config(),
            "DELIVERY_RETRY_INTERVALS": [0, 0],  # retried at once by the same burst worker
            "DISCORD_TIMEOUT_SECONDS": 1, "MAIL_TIMEOUT_SECONDS": 2}


_keys = itertools.count(1)


class Make:
    def __init__(self, app):
        self.app = app

    def notification(self, user_id: int, type: str = "match_result", title: str = "Nova 2 - 1 Eclipse",
                     body: str = "Final score.", url: str | None = "/tournaments/1#match-1") -> int:
        with self.app.app_context():
            n = Notification(user_id=user_id, type=type, title=title, body=body, url=url, is_read=False,
                             created_at=utcnow(), dedup_key=f"test:{next(_keys)}")
            db.session.add(n)
            db.session.commit()
            return n.id

    def delivery(self, channel: str, target: str, notification_id: int | None = None, user_id: int | None = None,
                 payload: dict | None = None) -> int:
        with self.app.app_context():
            d = Delivery(dedup_key=f"test:{next(_keys)}:{channel}:{target}", notification_id=notification_id,
                         user_id=user_id, channel=channel, target=target, payload=payload, status="pending",
                         attempts=0, created_at=utcnow())
            db.session.add(d)
            db.session.commit()
            return d.id

    def get(self, delivery_id: int) -> Delivery:
        with self.app.app_context():
            d = db.session.get(Delivery, delivery_id)
            db.session.expunge(d)
            return d


@pytest.fixture
def make(app):
    return Make(app)


@pytest.fixture
def enqueue(app):
    """Enqueue send_delivery for these delivery ids (as the pipeline does)."""
    from deltacrown.notifications.delivery_jobs import send_delivery

    def _enqueue(*delivery_ids):
        with app.app_context():
            return [send_delivery.enqueue(d) for d in delivery_ids]

    return _enqueue


class WorkerProcesses:
    """Real `python worker.py notifications` processes sharing the test's database and Redis."""

    def __init__(self, app, tmp_path, env: dict):
        self.app, self.tmp_path, self.env = app, tmp_path, env
        self.workers: list[WorkerProcess] = []

    def start(self, count: int, **extra_env):
        cfg = self.app.config
        env = {"DISCORD_TIMEOUT_SECONDS": cfg["DISCORD_TIMEOUT_SECONDS"],
               "DELIVERY_RETRY_INTERVALS": ",".join(map(str, cfg["DELIVERY_RETRY_INTERVALS"])),
               "LOG_LEVEL": "WARNING", "PYTHONPATH": PROJECT_ROOT, **self.env, **extra_env}
        for _ in range(count):
            log_path = self.tmp_path / f"worker-{len(self.workers)}.log"
            self.workers.append(WorkerProcess(self.app, log_path, ("notifications", "sends"), env).start(wait=False))
        return self

    def stop(self):
        for worker in self.workers:
            worker.terminate()  # all at once: each finishes its job meanwhile
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def logs(self) -> str:
        return "\n".join(worker.log() for worker in self.workers)


@pytest.fixture
def worker_processes(app, tmp_path, smtp_server, discord_server):
    workers = WorkerProcesses(app, tmp_path, {**smtp_server.env(), **discord_server.env()})
    yield workers
    workers.stop()
