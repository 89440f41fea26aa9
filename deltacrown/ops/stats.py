"""Job-run records and the numbers the ops dashboard and /metrics show.

RQ keeps a job's result for an hour at most, so every run is recorded here, in Redis,
shared by all processes: `record_job_run` is the run recorder ops registers with the
queue runtime at start (deltacrown.queue.record_runs_with). The last run of each
named job is kept apart, in ops/runs.py.

- `ops:hour:<epoch hour>`  hash  "<func>|finished", "<func>|failed", "<func>|seconds"
                                 (exact counts per hour; expires after 49 h)
- `ops:runs:<func>`        zset  the most recent runs (capped at SAMPLE_CAP, 48 h):
                                 the source of the p50/p95 durations
- `ops:types`              zset  job types seen, scored by their last run
- `ops:totals`             hash  monotonic counters since Redis was created: runs by
                                 status, seconds, histogram buckets (for /metrics)

Everything is bounded: hourly keys and samples expire, totals have a few fields per
job type. Recording never raises (a job must not fail because its stats could not be
written).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PREFIX = "deltacrown:ops"
HOUR = 3600
WINDOW_HOURS = 24
RETENTION_SECONDS = 48 * HOUR
SAMPLE_CAP = 1000
# Histogram buckets (seconds) for /metrics; the thresholds 5 s and 30 s are among them.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

# Health levels of the dashboard: (ok while, alert when).
SUCCESS_OK, SUCCESS_ALERT = 0.99, 0.95  # ok >= 99 %, alert < 95 %
DURATION_OK, DURATION_ALERT = 5.0, 30.0  # ok < 5 s, alert > 30 s
QUEUE_OK, QUEUE_ALERT = 100, 1000  # ok < 100, alert > 1000
LEVELS = ("ok", "warning", "alert")


def success_level(rate: float | None) -> str | None:
    if rate is None:
        return None
    return "ok" if rate >= SUCCESS_OK else "alert" if rate < SUCCESS_ALERT else "warning"


def duration_level(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return "ok" if seconds < DURATION_OK else "alert" if seconds > DURATION_ALERT else "warning"


def queue_level(length: int | None) -> str | None:
    if length is None:
        return None
    return "ok" if length < QUEUE_OK else "alert" if length > QUEUE_ALERT else "warning"


def worst(*levels: str | None) -> str | None:
    known = [lvl for lvl in levels if lvl]
    return max(known, key=LEVELS.index) if known else None


def _key(*parts) -> str:
    return ":".join((PREFIX, *map(str, parts)))


def hour_of(ts: float) -> int:
    return int(ts // HOUR)


# --- recording (after every run, in the worker) --------------------------------

def record_run(connection, func: str, job_id: str, started: float, duration: float, ok: bool,
               detail: str = "") -> None:
    """Record one finished or failed run of `func`. Never raises."""
    try:
        status = "finished" if ok else "failed"
        ended = started + duration
        record = json.dumps({"job_id": job_id, "started": started, "duration": round(duration, 6),
                             "status": status, "detail": detail[:300]})
        pipe = connection.pipeline(transaction=False)
        hour_key = _key("hour", hour_of(started))
        pipe.hincrby(hour_key, f"{func}|{status}", 1)
        pipe.hincrbyfloat(hour_key, f"{func}|seconds", duration)
        pipe.expire(hour_key, RETENTION_SECONDS + HOUR)
        runs_key = _key("runs", func)
        pipe.zadd(runs_key, {record: ended})
        pipe.zremrangebyscore(runs_key, "-inf", ended - RETENTION_SECONDS)
        pipe.zremrangebyrank(runs_key, 0, -SAMPLE_CAP - 1)
        pipe.expire(runs_key, RETENTION_SECONDS)
        pipe.zadd(_key("types"), {func: ended})
        totals = _key("totals")
        pipe.hincrby(totals, f"{func}|{status}", 1)
        pipe.hincrbyfloat(totals, f"{func}|seconds", duration)
        for bound in DURATION_BUCKETS:
            if duration <= bound:
                pipe.hincrby(totals, f"{func}|le|{bound}", 1)
        pipe.execute()
    except Exception:  # noqa: BLE001 - stats must never break the job
        log.warning("could not record the run of %s (job %s)", func, job_id, exc_info=True)


def record_job_run(job, started: float, duration: float, result=None, error: BaseException | None = None) -> None:
    """Record one run of an RQ job (the queue runtime's run recorder). Never raises."""
    try:
        func = job.func_name or "?"
    except Exception:  # noqa: BLE001 - undecodable job data: still count the run
        func = "?"
    record_run(job.connection, func, job.id, started, duration, ok=error is None,
               detail=describe_outcome(result, error))


def describe_outcome(result=None, error: BaseException | None = None) -> str:
    """One short line: the error, or the job's (JSON) result."""
    try:
        if error is not None:
            return f"{type(error).__name__}: {error}"[:300]
        text = json.dumps(result, default=str) if result is not None else "ok"
    except Exception:  # noqa: BLE001 - a strange result must not break the job
        return "?"
    return text if len(text) <= 200 else text[:197] + "..."


# --- reading -----------------------------------------------------------------

def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class JobTypeHealth:
    func: str
    finished: int = 0
    failed: int = 0
    seconds: float = 0.0
    p50: float | None = None
    p95: float | None = None

    @property
    def name(self) -> str:
        return self.func.rsplit(".", 1)[-1]

    @property
    def runs(self) -> int:
        return self.finished + self.failed

    @property
    def success_rate(self) -> float | None:
        return self.finished / self.runs if self.runs else None

    @property
    def success_level(self) -> str | None:
        return success_level(self.success_rate)

    @property
    def p50_level(self) -> str | None:
        return duration_level(self.p50)

    @property
    def p95_level(self) -> str | None:
        return duration_level(self.p95)

    @property
    def level(self) -> str | None:
        return worst(self.success_level, self.p50_level, self.p95_level)


@dataclass
class HourBucket:
    start: float  # epoch seconds
    finished: int = 0
    failed: int = 0


@dataclass
class JobHealth:
    types: list[JobTypeHealth] = field(default_factory=list)
    hours: list[HourBucket] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(t.runs for t in self.types)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.types)


def job_health(connection, now: float | None = None, hours: int = WINDOW_HOURS) -> JobHealth:
    """Runs, success rate and p50/p95 duration per job type over the last `hours`
    hour buckets (the current hour and the ones before it), and the per-hour series."""
    now = time.time() if now is None else now
    current = hour_of(now)
    hour_numbers = list(range(current - hours + 1, current + 1))
    window_start = hour_numbers[0] * HOUR

    pipe = connection.pipeline(transaction=False)
    for h in hour_numbers:
        pipe.hgetall(_key("hour", h))
    hashes = pipe.execute()

    by_type: dict[str, JobTypeHealth] = {}
    buckets = []
    for h, data in zip(hour_numbers, hashes):
        bucket = HourBucket(start=h * HOUR)
        for raw_field, raw_value in data.items():
            func, _, what = raw_field.decode().rpartition("|")
            entry = by_type.setdefault(func, JobTypeHealth(func))
            if what == "finished":
                entry.finished += int(raw_value)
                bucket.finished += int(raw_value)
            elif what == "failed":
                entry.failed += int(raw_value)
                bucket.failed += int(raw_value)
            elif what == "seconds":
                entry.seconds += float(raw_value)
        buckets.append(bucket)

    funcs = sorted(by_type)
    pipe = connection.pipeline(transaction=False)
    for func in funcs:
        pipe.zrangebyscore(_key("runs", func), window_start, "+inf")
    for func, records in zip(funcs, pipe.execute()):
        durations = sorted(json.loads(r)["duration"] for r in records)
        by_type[func].p50 = percentile(durations, 50)
        by_type[func].p95 = percentile(durations, 95)
    return JobHealth(types=[by_type[f] for f in funcs], hours=buckets)


@dataclass
class JobTotals:
    finished: int = 0
    failed: int = 0
    seconds: float = 0.0
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound -> cumulative count


def job_totals(connection) -> dict[str, JobTotals]:
    """Monotonic per-type counters since the first recorded run (for /metrics)."""
    totals: dict[str, JobTotals] = {}
    for raw_field, raw_value in connection.hgetall(_key("totals")).items():
        parts = raw_field.decode().split("|")
        entry = totals.setdefault(parts[0], JobTotals())
        if parts[1] == "finished":
            entry.finished = int(raw_value)
        elif parts[1] == "failed":
            entry.failed = int(raw_value)
        elif parts[1] == "seconds":
            entry.seconds = float(raw_value)
        elif parts[1] == "le":
            entry.buckets[float(parts[2])] = int(raw_value)
    return totals
