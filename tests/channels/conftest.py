"""Channel tests: the app points at the loopback SMTP and Discord stand-ins.

Delivery rows are created directly here (the pipeline creates them in production).
"""
from __future__ import annotations

import itertools

import pytest

from deltacrown.extensions import db
from deltacrown.models import Delivery, Notification
from deltacrown.timeutil import utcnow


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
                     body: str = "Final score.", url: str | None = "/matches/1") -> int:
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
    from deltacrown.channels.jobs import send_delivery

    def _enqueue(*delivery_ids):
        with app.app_context():
            return [send_delivery.enqueue(d) for d in delivery_ids]

    return _enqueue


class WorkerProcesses:
    """Real `python worker.py notifications` processes sharing the test's database and Redis."""

    def __init__(self, app, tmp_path, env: dict):
        self.app, self.tmp_path, self.env = app, tmp_path, env
        self.procs = []

    def start(self, count: int, **extra_env):
        import os
        import subprocess
        import sys

        from deltacrown.config import PROJECT_ROOT

        cfg = self.app.config
        env = {**os.environ, "DATABASE_URL": cfg["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": cfg["REDIS_URL"],
               "SECRET_KEY": cfg["SECRET_KEY"], "PUBLIC_BASE_URL": cfg["PUBLIC_BASE_URL"],
               "DISCORD_TIMEOUT_SECONDS": str(cfg["DISCORD_TIMEOUT_SECONDS"]),
               "DELIVERY_RETRY_INTERVALS": ",".join(map(str, cfg["DELIVERY_RETRY_INTERVALS"])),
               "LOG_LEVEL": "WARNING", "PYTHONPATH": str(PROJECT_ROOT), **self.env,
               **{k: str(v) for k, v in extra_env.items()}}
        for n in range(count):
            log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "wb")
            self.procs.append((subprocess.Popen([sys.executable, "worker.py", "notifications"], cwd=PROJECT_ROOT,
                                                env=env, stdout=log, stderr=subprocess.STDOUT), log))
        return self

    def stop(self):
        import subprocess

        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, log in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
        self.procs = []

    def logs(self) -> str:
        return "\n".join((self.tmp_path / f"worker-{n}.log").read_text(errors="replace")
                         for n in range(len(list(self.tmp_path.glob("worker-*.log")))))


@pytest.fixture
def worker_processes(app, tmp_path, smtp_server, discord_server):
    workers = WorkerProcesses(app, tmp_path, {**smtp_server.env(), **discord_server.env()})
    yield workers
    workers.stop()
