"""The scheduler process and how any job is started (schedule, API, dashboard).

`python worker.py --scheduler` calls `run_scheduler(app)`:

1. Time zone. rq-scheduler computes cron times from `datetime.now()`, i.e. the
   process's local time zone (its `use_local_timezone` flag only changes how the
   same instant is written). So the process sets `TZ=SCHEDULER_TIMEZONE` and
   calls `time.tzset()` before anything is scheduled: "0 8 * * *" means 08:00
   in that zone, DST included. Run nothing else in this process.
2. Reconcile. Every entry of `ops.schedule.RECURRING_JOBS` is registered under
   the fixed id `recurring-<name>`: an unchanged entry is kept (with its next
   run time), a changed one is replaced, a missing one added, and any
   `recurring-*` id no longer in the table is removed. Restarting, or starting
   two schedulers, never adds a copy.
3. Loop (`run_loop`, rq-scheduler's `Scheduler.run()` with two additions). Every
   SCHEDULER_INTERVAL seconds it writes a heartbeat (`HEARTBEAT_KEY`: who, when),
   takes rq-scheduler's Redis lock (SET NX), checks that every recurring id is
   still in rq-scheduler's set (one pipelined ZSCORE per job), reconciles again if
   any is missing (Redis restarted empty, FLUSHALL, a failover), and moves due
   jobs to their queue (`enqueue_jobs()`). Two scheduler processes enqueue each job
   once per period: the one holding the lock moves the job and sets its next cron
   time; the other then finds it not yet due, and finds nothing missing. A Redis
   error ends the round, not the process: the next round tries again.
   `/healthz` and the ops dashboard read the heartbeat: none, or one older than
   SCHEDULER_HEARTBEAT_STALE_SECONDS, means no scheduler is running its loop.

What the scheduler stores is a small trigger job, `run_recurring(name)`, on the
`scheduled` queue, not the job itself. rq-scheduler re-enqueues the *same* job
id every period and needs that job hash to live forever (a finished job whose
result TTL expires silently drops out of the schedule); it also has no retry
support. The trigger, run by a worker, enqueues the real job with
`fn.enqueue()`: a fresh id per run, the normal 30-minute timeout, one-hour
result TTL, retries with backoff, and the run recorded for `GET /api/v1/jobs`.
The "run now" API and the dashboard start jobs through the same `start_job`.

rq-scheduler has no serializer argument: its jobs are written with the job
class we pass, `AppJob`, whose constructor defaults to RQ's JSONSerializer,
the serializer our workers read with.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import os
import signal
import socket
import time
import warnings
from datetime import datetime, timezone

from flask import current_app
from redis.exceptions import RedisError
from rq import Callback
from rq.exceptions import NoSuchJobError

from ..errors import InvalidInput, NotFound, ServiceError
from ..queue import QUEUE_SCHEDULED, AppJob, fetch_job, get_redis
from . import schedule
from .schedule import RECURRING_JOBS, JobSpec, scheduler_job_id

log = logging.getLogger(__name__)

RECURRING_PREFIX = "recurring-"
TRIGGER_FUNC = "deltacrown.ops.scheduler.run_recurring"
LAST_RUN_KEY = "deltacrown:jobs:last_run"  # hash: job name -> JSON of its latest run
TRIGGER_TIMEOUT = 60
# JSON {name, pid, host, at (epoch seconds), interval} of the latest scheduler round. Kept a week,
# far past staleness, so the dashboard can say since when the scheduler has been silent.
HEARTBEAT_KEY = "deltacrown:scheduler:heartbeat"
HEARTBEAT_KEEP_SECONDS = 7 * 24 * 60 * 60


class JobUnavailable(ServiceError, status=503, code="unavailable"):
    """The job's function cannot be imported in this deployment."""


# --- the scheduler process ---------------------------------------------------

def use_scheduler_timezone(zone_name: str) -> None:
    """Make the process's local time zone the scheduler's (rq-scheduler's cron follows it)."""
    os.environ["TZ"] = zone_name
    time.tzset()


def silence_utcnow_deprecation() -> None:
    # rq-scheduler 0.14 still calls datetime.utcnow()/utcfromtimestamp(); hide only that
    # warning and only when it comes from rq_scheduler's own modules.
    warnings.filterwarnings("ignore", message=r"datetime\.datetime\.utc(now|fromtimestamp)\(\) is deprecated",
                            category=DeprecationWarning, module=r"rq_scheduler(\.|$)")
    # ... and crontab warns that a future version will read naive times as UTC; rq-scheduler
    # relies on the current behaviour (local time), which is what TZ above sets.
    warnings.filterwarnings("ignore", message=r"Version 0\.22\.0\+ of crontab", category=FutureWarning,
                            module=r"rq_scheduler(\.|$)")


def make_scheduler(app, name: str | None = None, interval: int | None = None):
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=QUEUE_SCHEDULED, connection=get_redis(app), job_class=AppJob, name=name,
                     interval=interval or app.config.get("SCHEDULER_INTERVAL", 60))


def _wanted(spec: JobSpec) -> dict:
    return {"func": TRIGGER_FUNC, "args": [spec.name], "cron": spec.cron, "origin": QUEUE_SCHEDULED}


def _registered(job) -> dict:
    return {"func": job.func_name, "args": list(job.args), "cron": job.meta.get("cron_string"),
            "origin": job.origin}


def reconcile(scheduler, specs=RECURRING_JOBS) -> dict:
    """Make the scheduler's `recurring-*` jobs exactly `specs`. Returns the ids added/replaced/removed/kept."""
    connection = scheduler.connection
    wanted = {scheduler_job_id(s): s for s in specs}
    registered = [m.decode() for m in connection.zrange(scheduler.scheduled_jobs_key, 0, -1)]
    report = {"added": [], "replaced": [], "removed": [], "kept": []}
    for job_id in registered:
        if job_id.startswith(RECURRING_PREFIX) and job_id not in wanted:
            _remove(scheduler, job_id)
            report["removed"].append(job_id)
    for job_id, spec in wanted.items():
        try:
            job = AppJob.fetch(job_id, connection=connection)
        except NoSuchJobError:
            job = None
        if job is not None and job_id in registered and _registered(job) == _wanted(spec):
            report["kept"].append(job_id)
            continue
        if job is not None or job_id in registered:
            _remove(scheduler, job_id)
            report["replaced"].append(job_id)
        else:
            report["added"].append(job_id)
        job = scheduler.cron(spec.cron, func=TRIGGER_FUNC, args=[spec.name], id=job_id, queue_name=QUEUE_SCHEDULED,
                             timeout=TRIGGER_TIMEOUT, description=f"recurring {spec.name}: {spec.description}",
                             use_local_timezone=True)
        # Keep the trigger's hash even if it fails (a failed job's hash expires, and an
        # expired hash falls out of rq-scheduler's set).
        job.failure_ttl = -1
        job.save()
    log.info("recurring jobs reconciled: %s", {k: len(v) for k, v in report.items()})
    return report


def _remove(scheduler, job_id: str) -> None:
    scheduler.cancel(job_id)
    try:
        AppJob.fetch(job_id, connection=scheduler.connection).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass


@contextlib.contextmanager
def scheduler_lock(scheduler):
    """Hold rq-scheduler's own lock, which its loop takes around each round of enqueues.

    Reconciling while another scheduler process is mid-round (a deploy overlapping the
    old and the new process) could see a job between its dequeue and its reschedule,
    take it for missing and replace it, dropping that period's run. The lock expires
    on its own (interval + 10 s) if its holder died, so the wait is bounded.
    """
    deadline = time.monotonic() + scheduler._interval + 15
    waited = False
    while not scheduler.acquire_lock():
        if not waited:
            log.warning("Lock already taken by another scheduler process; reconciling once it is free")
            waited = True
        if time.monotonic() > deadline:
            raise RuntimeError("could not take the rq-scheduler lock (rq:scheduler_lock) to reconcile")
        time.sleep(0.2)
    try:
        yield
    finally:
        scheduler.remove_lock()


def run_scheduler(app, burst: bool = False) -> int:
    """The scheduler process: time zone, reconcile, then the scheduler loop (until SIGTERM)."""
    use_scheduler_timezone(app.config["SCHEDULER_TIMEZONE"])
    silence_utcnow_deprecation()
    if not app.config["REDIS_URL"]:
        raise SystemExit("deltacrown scheduler: configuration error: REDIS_URL is not set")
    try:
        get_redis(app).ping()
    except Exception as exc:  # redis raises several connection error types
        raise SystemExit(f"deltacrown scheduler: REDIS_URL: cannot reach Redis: {exc}") from None
    scheduler = make_scheduler(app)
    with scheduler_lock(scheduler):
        reconcile(scheduler)
    log.info("scheduler %s running (time zone %s)", scheduler.name, app.config["SCHEDULER_TIMEZONE"])
    return run_loop(scheduler, app.config["SCHEDULER_INTERVAL"], burst=burst)


def run_loop(scheduler, interval: int, burst: bool = False) -> int:
    """rq-scheduler's `Scheduler.run()` loop, driven here so each round also beats and
    re-registers lost recurring jobs (`run_round`). Burst: stop after one round that
    held the lock (as `run(burst=True)` does)."""
    scheduler.register_birth()

    def stop(signum, frame):
        log.info("scheduler %s stopping (signal %s)", scheduler.name, signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            started = time.monotonic()
            try:
                held_lock = run_round(scheduler, interval)
            except RedisError as exc:
                held_lock = False
                log.warning("scheduler round failed (is Redis reachable?): %s; trying again in %s s", exc, interval)
            if burst and held_lock:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        with contextlib.suppress(RedisError):
            scheduler.remove_lock()
            scheduler.register_death()
    return 0


def run_round(scheduler, interval: int) -> bool:
    """One scheduler round: heartbeat; then, under rq-scheduler's lock, register the recurring
    jobs again if Redis lost any, and move due jobs to their queues. False: another scheduler
    process held the lock (it does the round)."""
    write_heartbeat(scheduler, interval)
    scheduler.heartbeat()
    if not scheduler.acquire_lock():
        log.info("Lock already taken by another scheduler process; skipping this round")
        return False
    try:
        specs = schedule.RECURRING_JOBS  # read at call time (tests swap the table)
        missing = missing_recurring_jobs(scheduler.connection, specs)
        if missing:
            log.warning("%d of %d recurring jobs are missing from the scheduler (Redis lost its data?): "
                        "registering them again: %s", len(missing), len(specs), ", ".join(missing))
            reconcile(scheduler, specs)
        scheduler.enqueue_jobs()
    finally:
        scheduler.remove_lock()
    return True


def missing_recurring_jobs(connection, specs) -> list[str]:
    """The ids of `specs` not in rq-scheduler's set: one round trip, one ZSCORE per job."""
    from rq_scheduler import Scheduler

    ids = [scheduler_job_id(s) for s in specs]
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.zscore(Scheduler.scheduled_jobs_key, job_id)
        scores = pipe.execute()
    return [job_id for job_id, score in zip(ids, scores) if score is None]


def write_heartbeat(scheduler, interval: int) -> None:
    beat = {"name": scheduler.name, "pid": os.getpid(), "host": socket.gethostname(), "at": time.time(),
            "interval": interval}
    scheduler.connection.set(HEARTBEAT_KEY, json.dumps(beat), ex=HEARTBEAT_KEEP_SECONDS)


def read_heartbeat(connection) -> dict | None:
    """The latest scheduler heartbeat ({name, pid, host, at, interval}), or None if there is none."""
    raw = connection.get(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        beat = json.loads(raw)
        float(beat["at"])
    except (ValueError, TypeError, KeyError):
        return None  # not written by this code: as good as none
    return beat


# --- starting jobs and recording their runs ----------------------------------

def job_function(spec: JobSpec):
    module_name, _, attr = spec.func.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise JobUnavailable(f"job {spec.name} is not available in this deployment ({spec.func})") from None
    return fn


def validate_job_args(spec: JobSpec, args: dict | None) -> dict:
    """The keyword arguments for `spec`'s function, or InvalidInput naming the field.

    Allowed names come from the table; which are required, from the function's
    signature (a parameter without a default).
    """
    args = dict(args or {})
    unknown = sorted(set(args) - set(spec.args))
    if unknown:
        raise InvalidInput(f"{spec.name} takes no argument {', '.join(unknown)}",
                           fields={k: f"not an argument of {spec.name}" for k in unknown})
    try:
        params = inspect.signature(job_function(spec)).parameters
    except JobUnavailable:
        params = {}  # judged when it is started (503); names and values can still be checked
    missing = [a for a in spec.args if a not in args and a in params
               and params[a].default is inspect.Parameter.empty]
    if missing:
        raise InvalidInput(f"{spec.name} needs {', '.join(missing)}", fields={k: "required" for k in missing})
    fields = {}
    for key, value in args.items():
        if value is None and (not params or (key in params and params[key].default is None)):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fields[key] = "must be a whole number of at least 1"
        elif value > schedule.MAX_ARG_VALUES.get(key, value):
            fields[key] = f"must be at most {schedule.MAX_ARG_VALUES[key]}"
    if fields:
        raise InvalidInput("Invalid values: " + "; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)
    return args


def start_job(name: str, args: dict | None = None, trigger: str = "manual"):
    """Enqueue the job called `name` now (validated args) and record it as its latest run."""
    spec = schedule.JOBS_BY_NAME.get(name)  # looked up at call time (tests swap the table)
    if spec is None:
        raise NotFound(f"no job named {name!r}; known: {', '.join(sorted(schedule.JOBS_BY_NAME))}")
    kwargs = validate_job_args(spec, args)
    fn = job_function(spec)
    job = fn.enqueue(**kwargs, meta={"job_name": name, "trigger": trigger},
                     on_success=Callback(record_success), on_failure=Callback(record_failure))
    _record(get_redis(), name, {"job_id": job.id, "status": "queued", "trigger": trigger,
                                "enqueued_at": _iso(datetime.now(timezone.utc)), "ended_at": None, "error": None})
    return job


def run_recurring(name: str) -> str:
    """The scheduler's trigger job: start the recurring job `name`; returns the real job's id."""
    try:
        return start_job(name, trigger="schedule").id
    except Exception as exc:  # e.g. the job's module is missing: show it on the dashboard too
        from rq import get_current_job

        trigger = get_current_job()
        _record(get_redis(), name, {"job_id": trigger.id if trigger else None, "status": "failed",
                                    "trigger": "schedule", "enqueued_at": None,
                                    "ended_at": _iso(datetime.now(timezone.utc)),
                                    "error": f"{type(exc).__name__}: {exc}"[:500]})
        raise


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # RQ keeps naive UTC datetimes
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat()


def _record(connection, name: str, run: dict) -> None:
    connection.hset(LAST_RUN_KEY, name, json.dumps(run))


def _update_run(job, connection, **changes) -> None:
    name = job.meta.get("job_name")
    if not name:
        return
    raw = connection.hget(LAST_RUN_KEY, name)
    run = json.loads(raw) if raw else {"job_id": job.id}
    if run.get("job_id") != job.id:
        return  # a newer run of this job has started since; keep that one
    run.update(changes, ended_at=_iso(datetime.now(timezone.utc)))
    _record(connection, name, run)


def record_success(job, connection, result, *args, **kwargs):
    _update_run(job, connection, status="finished", error=None)


def record_failure(job, connection, exc_type, exc_value, traceback, *args, **kwargs):
    status = "retrying" if job.retries_left else "failed"
    _update_run(job, connection, status=status, error=f"{exc_type.__name__}: {exc_value}"[:500])


def last_runs(connection) -> dict[str, dict]:
    return {k.decode(): json.loads(v) for k, v in connection.hgetall(LAST_RUN_KEY).items()}


def next_run_times(connection, specs) -> dict[str, str | None]:
    from rq_scheduler import Scheduler

    with connection.pipeline() as pipe:
        for spec in specs:
            pipe.zscore(Scheduler.scheduled_jobs_key, scheduler_job_id(spec))
        scores = pipe.execute()
    return {spec.name: (_iso(datetime.fromtimestamp(score, timezone.utc)) if score is not None else None)
            for spec, score in zip(specs, scores)}


RUN_STATUS = {"queued": "queued", "deferred": "queued", "scheduled": "queued", "started": "started",
              "finished": "finished", "failed": "failed", "stopped": "failed", "canceled": "failed"}


def job_run(job_id: str) -> dict:
    """{job_id, name, status: queued|started|finished|failed, result, error, progress, times} of one run."""
    job = fetch_job(job_id)
    if job is None:
        raise NotFound(f"no job run {job_id!r} (unknown, or its result has expired)")
    status = RUN_STATUS.get(job.get_status(refresh=False) or "queued", "queued")
    error = None
    if status == "failed":
        exc = job.latest_result().exc_string if job.latest_result() else None
        error = (exc or "failed").strip().splitlines()[-1]
    return {"job_id": job.id, "name": job.meta.get("job_name"), "status": status,
            "result": job.return_value() if status == "finished" else None, "error": error,
            "progress": job.meta.get("progress"), "enqueued_at": _iso(job.enqueued_at),
            "started_at": _iso(job.started_at), "ended_at": _iso(job.ended_at)}


def list_jobs() -> list[dict]:
    """Every runnable job with its schedule, next run (recurring ones) and latest run."""
    from .schedule import RUNNABLE_JOBS

    connection = get_redis()
    runs = last_runs(connection)
    nexts = next_run_times(connection, RUNNABLE_JOBS)
    return [{"name": s.name, "description": s.description, "schedule": s.cron, "recurring": s.cron is not None,
             "timezone": current_app.config["SCHEDULER_TIMEZONE"] if s.cron else None, "args": list(s.args),
             "next_run_at": nexts[s.name] if s.cron else None, "last_run": runs.get(s.name),
             "last_status": (runs.get(s.name) or {}).get("status")} for s in RUNNABLE_JOBS]
