"""Shared pieces of the reliability tests: real processes, broken on purpose.

- `pg`: a PostgreSQL database of this module's own (these tests are PG-only:
  SQLite cannot hold concurrent writers), schema created once, emptied per test.
- `redis_server`: a redis-server of this test's own on a free port, which the
  test may stop and start again on the same port (`.stop()`, `.start()`).
- `rapp`: the app in the test process (setup and assertions), on both.
- `worker_env(**extra)`: the environment for `python worker.py` / gunicorn on
  the same database and Redis; database connections are named `dc-worker`
  (application_name) so a test can find and terminate them.
- `start_web(env, workers=...)`: a real gunicorn serving `app:app` on a free
  loopback port, started and answering → `WebServer` (`.proc`, `.url`, `.api`).
- `record_figures(scenario, **figures)`: merges a scenario's measured figures
  into test-output/reliability-figures.json (RELIABILITY.md quotes them).

Counts and durations are configurable by environment (see RELIABILITY.md).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from deltacrown.config import PROJECT_ROOT
from deltacrown.devredis import free_port, start_redis_server
from deltacrown.extensions import db
from deltacrown.queue import QUEUE_NAMES, get_queue, get_redis
from tests.conftest import _reset_schema, make_test_app
from tests.support.databases import scratch_postgres_database
from tests.support.pausing import pause_file
from tests.support.processes import PYTHON, process_env, wait_for, wait_for_http

FIGURES_PATH = PROJECT_ROOT / "test-output" / "reliability-figures.json"
WORKER_APP_NAME = "dc-worker"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@pytest.fixture(scope="module")
def pg():
    """URL of a scratch PostgreSQL database (schema created), dropped after the module."""
    with scratch_postgres_database("dc_rel") as url:
        yield url


class RedisServer:
    """A redis-server process that can be stopped and restarted on the same port."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        url, self.proc = start_redis_server(self.workdir, port=self.port)
        assert url == self.url
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # an outage, not a shutdown
            self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def rapp(pg, redis_server):
    app = make_test_app(pg, redis_server.url)
    _reset_schema(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def worker_env(pg, redis_server):
    def build(**extra):
        sep = "&" if "?" in pg else "?"
        env = dict(DATABASE_URL=f"{pg}{sep}application_name={WORKER_APP_NAME}", REDIS_URL=redis_server.url,
                   SECRET_KEY="test-secret", PUBLIC_BASE_URL="http://localhost:5000", LOG_LEVEL="WARNING",
                   MAIL_SUPPRESS_SEND="true")
        env.update({k: str(v) for k, v in extra.items()})
        return process_env(**env)

    return build


class WebServer:
    """A gunicorn process serving the app: `url` is its root, `api` the /api/v1 prefix."""

    def __init__(self, proc, port: int):
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.api = f"{self.url}/api/v1"


@pytest.fixture
def start_web(spawn):
    """`start_web(env, workers=4)`: gunicorn (sync workers) on a free port, waited for until it answers."""

    def start(env: dict, workers: int = 4) -> WebServer:
        port = free_port()
        proc = spawn([PYTHON, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                      "--timeout", "120", "--log-level", "warning"], env=env, name="gunicorn")
        web = WebServer(proc, port)
        wait_for_http(f"{web.url}/healthz", status=None, timeout=90, process=proc)
        return web

    return start


def record_figures(scenario: str, **figures) -> None:
    FIGURES_PATH.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES_PATH.read_text()) if FIGURES_PATH.exists() else {}
    data[scenario] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\n[reliability] {scenario}: {json.dumps(figures, sort_keys=True)}")


class PausedWorker:
    """A worker (worker.py's main, via tests.support.pausing) that stops at a checkpoint; the test then SIGKILLs it."""

    def __init__(self, spawn, env, pause_dir: Path, point: str, name: str):
        self.pause_dir = pause_dir
        self.point = point
        shutil.rmtree(pause_dir, ignore_errors=True)
        pause_dir.mkdir(parents=True)
        self.reached = pause_file(point, "reached", pause_dir)
        self.proc = spawn([PYTHON, "-m", "tests.support.pausing", point, str(pause_dir)], env=env, name=name)

    def wait_paused(self, timeout: float = 90.0) -> int:
        def paused():
            assert self.proc.is_running(), f"worker died before {self.point}:\n{self.proc.output()[-3000:]}"
            # The hook creates the file, then writes its pid: an empty file is "not yet".
            text = self.reached.read_text().strip() if self.reached.exists() else ""
            return int(text) if text else None

        self.horse_pid = wait_for(paused, timeout=timeout, message=f"a worker to reach {self.point}")
        return self.horse_pid  # the work horse running the job

    def kill(self) -> None:
        """SIGKILL the worker and its work horse at once (a machine or container dying).

        RQ puts the horse in a process group of its own (os.setpgrp), so both groups. The
        worker first: killed second, it could see its horse die and schedule the retry
        itself before its own kill arrived (seen on a loaded machine), which no crash does."""
        for group in (self.proc.pid, self.horse_pid):
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        wait_for(lambda: not _alive(self.horse_pid), timeout=30, message=f"work horse {self.horse_pid} to die")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by its dead parent's reaper) counts as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def recover_abandoned_jobs(app) -> int:
    """What RQ's maintenance does for a dead worker, without waiting for its heartbeat to lapse.

    The started-registry entry of a SIGKILLed worker's job lapses within about 90 s
    (RQ's job-monitoring heartbeat, 30 s + 60 s); a live worker's maintenance then
    runs `StartedJobRegistry.cleanup()`, which retries the job (scheduled after its
    first retry interval). Here the same cleanup runs with its clock moved past
    that lapse, and the scheduled retry is moved to the queue now. Only call it
    when no live worker is running a job. Returns the jobs put back on a queue.
    """
    redis = get_redis(app)
    later = time.time() + 600
    requeued = 0
    for name in QUEUE_NAMES:
        queue = get_queue(name, app)
        StartedJobRegistry(queue=queue).cleanup(timestamp=later)
        scheduled = ScheduledJobRegistry(queue=queue)
        for job_id in scheduled.get_job_ids():
            scheduled.requeue(job_id)
            requeued += 1
    assert redis.ping()
    return requeued


def pg_backends(app, application_name: str = WORKER_APP_NAME) -> list[tuple[int, str, str]]:
    """(pid, state, query) of this database's connections with that application_name."""
    from sqlalchemy import text

    with app.app_context():
        rows = db.session.execute(text(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = :name"), {"name": application_name}).all()
        db.session.rollback()
    return [tuple(r) for r in rows]
