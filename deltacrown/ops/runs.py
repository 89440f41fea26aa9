"""Starting a job by name ("run now": API, dashboard, the scheduler's trigger) and its last run.

The last run of each named job is one Redis hash, `LAST_RUN_KEY` (job name -> JSON):
written when the run is enqueued (`start_job`), and again when it ends, by the RQ
callbacks `record_success` / `record_failure` that `start_job` attaches. The jobs API,
the dashboard and `GET /api/v1/jobs` all read it through `last_runs`.
"""
from __future__ import annotations

import importlib
import inspect
import json
from datetime import datetime, timezone

from flask import current_app
from rq import Callback

from ..errors import InvalidInput, NotFound, ServiceError
from ..queue import fetch_job, get_redis
from . import schedule
from .schedule import JobSpec, scheduler_job_id
from .stats import describe_outcome

LAST_RUN_KEY = "deltacrown:jobs:last_run"  # hash: job name -> JSON of its latest run


class JobUnavailable(ServiceError, status=503, code="unavailable"):
    """The job's function cannot be imported in this deployment."""


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
                                "enqueued_at": iso(datetime.now(timezone.utc)), "ended_at": None, "error": None})
    return job


def record_failed_start(connection, name: str, trigger_id: str | None, exc: Exception) -> None:
    """The scheduler's trigger could not start `name` (e.g. its module is missing)."""
    _record(connection, name, {"job_id": trigger_id, "status": "failed", "trigger": "schedule", "enqueued_at": None,
                               "ended_at": iso(datetime.now(timezone.utc)),
                               "error": f"{type(exc).__name__}: {exc}"[:500]})


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # RQ keeps naive UTC datetimes
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat()


def _record(connection, name: str, run: dict) -> None:
    connection.hset(LAST_RUN_KEY, name, json.dumps(run))


def _update_run(job, connection, detail: str, **changes) -> None:
    name = job.meta.get("job_name")
    if not name:
        return
    raw = connection.hget(LAST_RUN_KEY, name)
    run = json.loads(raw) if raw else {"job_id": job.id}
    if run.get("job_id") != job.id:
        return  # a newer run of this job has started since; keep that one
    ended = datetime.now(timezone.utc)
    if job.started_at is not None:  # the dashboard shows when it started and how long it took
        started = job.started_at.replace(tzinfo=timezone.utc) if job.started_at.tzinfo is None else job.started_at
        run.update(started=started.timestamp(), duration=max(0.0, (ended - started).total_seconds()))
    run.update(changes, detail=detail, ended_at=iso(ended))
    _record(connection, name, run)


def record_success(job, connection, result, *args, **kwargs):
    _update_run(job, connection, describe_outcome(result), status="finished", error=None)


def record_failure(job, connection, exc_type, exc_value, traceback, *args, **kwargs):
    status = "retrying" if job.retries_left else "failed"
    error = f"{exc_type.__name__}: {exc_value}"
    _update_run(job, connection, error[:300], status=status, error=error[:500])


def last_runs(connection) -> dict[str, dict]:
    """Job name -> its latest run {job_id, status, trigger, enqueued_at, ended_at, error, ...}."""
    return {k.decode(): json.loads(v) for k, v in connection.hgetall(LAST_RUN_KEY).items()}


def next_run_times(connection, specs) -> dict[str, str | None]:
    from rq_scheduler import Scheduler

    with connection.pipeline() as pipe:
        for spec in specs:
            pipe.zscore(Scheduler.scheduled_jobs_key, scheduler_job_id(spec))
        scores = pipe.execute()
    return {spec.name: (iso(datetime.fromtimestamp(score, timezone.utc)) if score is not None else None)
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
            "progress": job.meta.get("progress"), "enqueued_at": iso(job.enqueued_at),
            "started_at": iso(job.started_at), "ended_at": iso(job.ended_at)}


def list_jobs() -> list[dict]:
    """Every runnable job with its schedule, next run (recurring ones) and latest run."""
    specs = schedule.RUNNABLE_JOBS  # read at call time (tests swap the table)
    connection = get_redis()
    runs = last_runs(connection)
    nexts = next_run_times(connection, specs)
    return [{"name": s.name, "description": s.description, "schedule": s.cron, "recurring": s.cron is not None,
             "timezone": current_app.config["SCHEDULER_TIMEZONE"] if s.cron else None, "args": list(s.args),
             "next_run_at": nexts[s.name] if s.cron else None, "last_run": runs.get(s.name),
             "last_status": (runs.get(s.name) or {}).get("status")} for s in specs]
