"""The RQ runtime: Redis connection, queues, the job decorator and the worker.

Jobs are plain functions decorated with `@background_job(...)`, which binds the
queue, timeout, TTLs and retry policy once. Calling `fn.enqueue(*args)` puts
it on its queue; calling `fn(*args)` runs it in-process (the CLI does that).

Job arguments and results are JSON (RQ's JSONSerializer): ids and plain values
only, never ORM objects. Every job runs inside the Flask app context of the app
its worker was made for (`make_worker`), so job modules never push one themselves.
Each decorated job is listed in `JOBS`; each run is handed to the recorder that
the app registered with `record_runs_with` (ops: the dashboard and /metrics).
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from flask import current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue, get_current_job, worker_registration
from rq.job import Job, Retry
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now, utcformat
from rq.worker import HerokuWorker, SimpleWorker, WorkerStatus

from .errors import ServiceError

log = logging.getLogger(__name__)

# Queue split: user-visible notification work must not wait behind a long
# scheduled batch, and interactive "run now" work goes to default. Sends (email,
# Discord) come right after the in-app work: under load an in-app notification is
# not held up by the emails queued before it, and the sends catch up after.
QUEUE_NOTIFICATIONS = "notifications"
QUEUE_SENDS = "sends"
QUEUE_DEFAULT = "default"
QUEUE_SCHEDULED = "scheduled"
QUEUE_NAMES = (QUEUE_NOTIFICATIONS, QUEUE_SENDS, QUEUE_DEFAULT, QUEUE_SCHEDULED)  # worker priority order

# Transient failures (database or network) are retried with backoff.
DEFAULT_RETRY_INTERVALS = (10, 30, 60, 120, 300)


class RedisUnavailable(Exception):
    pass


def get_redis(app=None) -> Redis:
    """The app's Redis client, created once per app (never at import time)."""
    app = app or current_app._get_current_object()
    client = app.extensions.get("deltacrown_redis")
    if client is None:
        url = app.config.get("REDIS_URL")
        if not url:
            raise RedisUnavailable("REDIS_URL is not set")
        client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
        app.extensions["deltacrown_redis"] = client
    return client


# Takes the lease (KEYS[1] = ARGV[1] for ARGV[2] seconds) if it is free, or if it is held by an
# earlier run of this same job (its value starts with ARGV[3], the job's id and a space).
_TAKE_LEASE = """
local held = redis.call('get', KEYS[1])
if held and (ARGV[3] == '' or string.sub(held, 1, string.len(ARGV[3])) ~= ARGV[3]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'ex', ARGV[2])
if held then return 2 end
return 1
"""

# Deletes the lease only if it is still ours (it may have expired and been taken since).
_RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def take_lease(key: str, seconds: int) -> Callable[[], None] | None:
    """Hold `key` in Redis for at most `seconds`: a release function, or None when someone
    else holds it. A holder that dies loses it when it expires; so does one whose release
    fails (logged, never raised: the work it guarded is done).

    Inside an RQ job the lease names the job, and a later run of the same job takes over a
    lease an earlier run still holds: RQ runs a job again only once it has judged the earlier
    run dead (a SIGKILLed worker's heartbeat lapsed) or failed, so the retry does not wait out
    a dead run's lease (for a send, 240 s: longer than the 2 minutes a retry may take)."""
    job = get_current_job()
    owner = f"{job.id} " if job is not None else ""
    redis, token = get_redis(), f"{owner}{uuid.uuid4().hex}"
    taken = redis.eval(_TAKE_LEASE, 1, key, token, seconds, owner)
    if not taken:
        return None
    if taken == 2:
        log.warning("took over %s from an earlier run of job %s", key, job.id)

    def release() -> None:
        try:
            redis.eval(_RELEASE_LEASE, 1, key, token)
        except RedisError:
            log.warning("could not release %s; it expires within %s s", key, seconds, exc_info=True)

    return release


def get_queue(name: str = QUEUE_DEFAULT, app=None) -> Queue:
    return Queue(name, connection=get_redis(app), serializer=JSONSerializer, job_class=AppJob)


def jobs_waiting(name: str) -> bool:
    """Whether jobs wait in this queue (one LLEN); False when Redis cannot say."""
    try:
        return get_queue(name).count > 0
    except RedisError:
        return False


def fetch_job(job_id: str, app=None) -> Job | None:
    from rq.exceptions import NoSuchJobError

    try:
        return AppJob.fetch(job_id, connection=get_redis(app), serializer=JSONSerializer)
    except (NoSuchJobError, ValueError):  # ValueError: not even a well-formed job id
        return None


# A job in one of these will still run (or is running): a second one with its id is not needed.
LIVE_JOB_STATUSES = ("queued", "scheduled", "started", "deferred")


def job_is_live(job_id: str) -> bool:
    """Whether the job with this id exists and has yet to finish (a sweep re-creates only lost ones)."""
    job = fetch_job(job_id)
    return job is not None and job.get_status(refresh=False) in LIVE_JOB_STATUSES


# Delete the mark and move up to ARGV[1] ids from the list to the job's own key in one step (a
# retry finds its earlier take there and takes nothing new); returns the ids and how many are left.
_TAKE_READY = """
local taken = redis.call('LRANGE', KEYS[3], 0, -1)
if #taken == 0 then
    redis.call('DEL', KEYS[2])
    taken = redis.call('LPOP', KEYS[1], ARGV[1]) or {}
    if #taken > 0 then
        redis.call('RPUSH', KEYS[3], unpack(taken))
        redis.call('EXPIRE', KEYS[3], ARGV[2])
    end
end
return {taken, redis.call('LLEN', KEYS[1])}
"""


@dataclass(frozen=True)
class ReadyList:
    """Ids of small pieces of work gathered for one job at a time, instead of a job each.

    Under load a job's RQ work (dequeue, state, heartbeat, finishing) cost more than one
    event's or one email's own work, so the ids go on a Redis list (`<name>:ready`) and one
    job takes what is there. A mark (`<name>:ready-job`, SET NX) says a job is queued and
    has not started: a `gather` that finds it only pushes. The job deletes the mark and
    moves up to `per_job` ids to a key of its own (`<name>:taken:<job id>`) in one Lua step,
    so an id pushed after the take queues a new job and one pushed before is this job's;
    its retry (after a failure or a SIGKILL) takes the same ids again until `done`.

    The mark holds the id of the job it announces and lapses after `mark_seconds`: a job
    queued behind a longer backlog only gets a second one. A mark whose job never reached the
    queue (the process died between the two, or Redis refused) is found by the minute sweep
    that owns the list (`queue_job_if_lost`), which queues one. Ids lost with Redis's data
    are found again by their owners' sweeps (the outbox's redelivery, the lost-sends sweep).
    """
    name: str
    per_job: int
    mark_seconds: int = 30
    taken_seconds: int = 24 * 3600

    @property
    def ready_key(self) -> str:
        return f"{self.name}:ready"

    @property
    def mark_key(self) -> str:
        return f"{self.name}:ready-job"

    def taken_key(self, job_id: str) -> str:
        return f"{self.name}:taken:{job_id}"

    def gather(self, ids, enqueue: Callable[..., Job]) -> None:
        """Put these ids on the list, and queue a job (`enqueue(job_id=...)`) unless one is queued and has
        not started. Raises if Redis does: the caller keeps the ids for its own retry or sweep."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        redis = get_redis()
        job_id = str(uuid.uuid4())
        with redis.pipeline() as pipe:  # MULTI/EXEC: the ids and the mark together
            pipe.rpush(self.ready_key, *ids)
            pipe.set(self.mark_key, job_id, nx=True, ex=self.mark_seconds)
            _, first = pipe.execute()
        if first:
            self._enqueue(redis, enqueue, job_id)

    def take(self, job_id: str, enqueue: Callable[..., Job]) -> list[int]:
        """The ids job `job_id` takes (those an earlier run of it took, if any); with more left
        on the list, a job for them is queued (best effort: the next gather queues one)."""
        redis = get_redis()
        ids, left = redis.eval(_TAKE_READY, 3, self.ready_key, self.mark_key, self.taken_key(job_id),
                               self.per_job, self.taken_seconds)
        if left:
            try:
                next_job_id = str(uuid.uuid4())
                if redis.set(self.mark_key, next_job_id, nx=True, ex=self.mark_seconds):
                    self._enqueue(redis, enqueue, next_job_id)
            except Exception:  # noqa: BLE001 - the taken ids go on; the next gather or sweep queues a job
                log.warning("could not queue a job for the %s ids left on %s", left, self.ready_key, exc_info=True)
        return [int(i) for i in ids]

    def queue_job_if_lost(self, enqueue: Callable[..., Job]) -> bool:
        """For the list's minute sweep: with ids on the list and no job that will take them (no
        mark, or its job never reached the queue), queue one. Whether it did."""
        redis = get_redis()
        waiting = redis.llen(self.ready_key)
        if not waiting:
            return False
        announced = redis.get(self.mark_key)
        if announced is not None and job_is_live(announced.decode()):
            return False
        job_id = str(uuid.uuid4())
        redis.set(self.mark_key, job_id, ex=self.mark_seconds)
        log.warning("%s ids wait on %s with no job queued for them; queued one", waiting, self.ready_key)
        self._enqueue(redis, enqueue, job_id)
        return True

    def done(self, job_id: str) -> None:
        """Job `job_id` is through with its take: a later run of it takes anew."""
        get_redis().delete(self.taken_key(job_id))

    def _enqueue(self, redis, enqueue, job_id: str) -> None:
        # Queue the job the mark just set announces; without it, no mark (the next gather queues one).
        try:
            enqueue(job_id=job_id)
        except Exception:
            redis.delete(self.mark_key)  # (best effort: else it lapses)
            raise


# Called after every run: (job, started epoch, duration seconds, result, error or None).
RunRecorder = Callable[[Job, float, float, object, BaseException | None], None]
_run_recorder: RunRecorder | None = None


def record_runs_with(recorder: RunRecorder | None) -> None:
    """Have every job run reported to `recorder`, which must never raise (ops registers one at start)."""
    global _run_recorder
    _run_recorder = recorder


class AppJob(Job):
    """A job that runs inside a Flask app context and serializes as JSON.

    The worker binds the app by subclassing (see `make_worker`); a job performed
    by anything else (a plain `rq worker`) has no app to run in and fails saying so.
    """

    flask_app = None

    def __init__(self, id=None, connection=None, serializer=None):
        super().__init__(id=id, connection=connection, serializer=serializer or JSONSerializer)

    def perform(self):
        app = self.flask_app
        if app is None:
            raise RuntimeError("no Flask app is bound to this job: run jobs with worker.py "
                               "(deltacrown.queue.make_worker)")
        started, clock, result, error = time.time(), time.monotonic(), None, None
        try:
            if has_app_context() and current_app._get_current_object() is app:
                result = super().perform()
            else:
                with app.app_context():
                    result = super().perform()
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            if _run_recorder is not None:
                _run_recorder(self, started, time.monotonic() - clock, result, error)


@dataclass(frozen=True)
class JobPolicy:
    """How a job runs: its queue, limits, retries, and what a ServiceError it raises becomes.

    domain_errors "raise": the job fails (and is retried like any error). "result": a
    ServiceError is a permanent answer, not a transient fault: the job finishes with
    {"status": "error", "error": {...}} instead of being retried.
    """
    queue: str = QUEUE_DEFAULT
    timeout: int | None = None  # None: RQ_JOB_TIMEOUT
    result_ttl: int | None = None  # None: RQ_RESULT_TTL
    failure_ttl: int | None = None  # None: RQ_FAILURE_TTL
    retry_intervals: tuple[int, ...] | None = DEFAULT_RETRY_INTERVALS
    domain_errors: str = "raise"

    def enqueue_options(self) -> dict:
        cfg = current_app.config
        intervals = self.retry_intervals
        return dict(
            timeout=self.timeout or cfg["RQ_JOB_TIMEOUT"],
            result_ttl=cfg["RQ_RESULT_TTL"] if self.result_ttl is None else self.result_ttl,
            failure_ttl=cfg["RQ_FAILURE_TTL"] if self.failure_ttl is None else self.failure_ttl,
            retry=Retry(max=len(intervals), interval=list(intervals)) if intervals else None,
        )


# Every @background_job, by the dotted path RQ stores as its func_name.
JOBS: dict[str, Callable] = {}


def background_job(queue: str = QUEUE_DEFAULT, timeout: int | None = None, result_ttl: int | None = None,
                   failure_ttl: int | None = None, retry_intervals=DEFAULT_RETRY_INTERVALS,
                   domain_errors: str = "raise"):
    """Declare a function as an RQ job with its `JobPolicy`, and list it in `JOBS`."""
    if domain_errors not in ("raise", "result"):
        raise ValueError(f"domain_errors must be 'raise' or 'result', not {domain_errors!r}")
    policy = JobPolicy(queue, timeout, result_ttl, failure_ttl,
                       tuple(retry_intervals) if retry_intervals else retry_intervals, domain_errors)

    def decorate(fn):
        job = fn
        if domain_errors == "result":
            @functools.wraps(fn)
            def job(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except ServiceError as exc:
                    return {"status": "error", **exc.to_dict()}

        @functools.wraps(fn)
        def enqueue(*args, job_id: str | None = None, meta: dict | None = None, on_success=None, on_failure=None,
                    **kwargs):
            # on_success / on_failure: rq.Callback(s) run by the worker (ops records job runs with them).
            return get_queue(queue).enqueue_call(job, args=args, kwargs=kwargs, job_id=job_id, meta=meta,
                                                 on_success=on_success, on_failure=on_failure,
                                                 **policy.enqueue_options())

        def enqueue_many(args_list) -> list[Job]:
            """One job per tuple of arguments, all in one Redis round trip (a pipeline)."""
            bound = policy.enqueue_options()
            return get_queue(queue).enqueue_many([Queue.prepare_data(job, args=tuple(args), **bound)
                                                  for args in args_list])

        job.enqueue = enqueue
        job.enqueue_many = enqueue_many
        job.queue_name = queue
        job.policy = policy
        JOBS[f"{fn.__module__}.{fn.__qualname__}"] = job
        return job

    return decorate


def registered_job(path: str) -> Callable:
    """The job declared at `path` ("package.module.function"), by name: for a service that
    schedules a job whose module imports that service (an import would close a circle)."""
    try:
        return JOBS[path]
    except KeyError:
        raise LookupError(f"no job {path!r} is declared (is its module imported? create_app imports every part)") \
            from None


class JobIdFilter(logging.Filter):
    """Stamps each log record with the id of the RQ job running it (or '-')."""

    def filter(self, record):
        from rq import get_current_job

        job = get_current_job()
        record.job_id = job.id if job else "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(JobIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [job %(job_id)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# The hot queues: their jobs run in worker.py's own process (WarmWorker); the others fork.
IN_PROCESS_QUEUES = frozenset({QUEUE_NOTIFICATIONS, QUEUE_SENDS})


class _JobHeartbeats(threading.Thread):
    """Keeps an in-process job's heartbeats going, as a forking worker does while it waits
    for its horse (`monitor_work_horse`): without them a job longer than the heartbeat TTL
    would look abandoned to other workers, and with them a SIGKILLed worker's job lapses
    as soon as a horse's would (retried within two minutes)."""

    def __init__(self, worker, job, execution):
        super().__init__(name=f"heartbeats-{job.id}", daemon=True)
        self.worker, self.job, self.execution = worker, job, execution
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(self.worker.job_monitoring_interval):
            try:
                self.worker.maintain_heartbeats(self.job, self.execution)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                log.warning("heartbeat for job %s failed", self.job.id, exc_info=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self.join(5)


class WarmWorker(HerokuWorker):
    """worker.py's worker: the hot queues' jobs run in this process, the batches fork.

    A forked work horse costs a fork and a cold start (an empty connection pool, no
    compiled statements) for every job: several times the work of handling an outbox
    event or making a send. The jobs of IN_PROCESS_QUEUES (notifications: outbox events,
    reminders, snooze wake-ups; sends: email and Discord) run here the way RQ's
    SimpleWorker runs every job, on connections kept warm across jobs; their timeout is still enforced (RQ's death
    penalty: SIGALRM in this process) and their heartbeats still beat (`_JobHeartbeats`),
    so a SIGKILLed worker's job is retried as soon as a horse's would be. The other queues'
    jobs (digests, announcements, payouts, the scheduled batches) keep HerokuWorker's horse:
    a long batch's crash or leak stays in one process, and SIGTERM (a PaaS restart) stops
    the horse and fails the job for its retry. On SIGTERM during a hot job the worker lets
    that job finish (they are short; each send is claimed once, so one cut short by the
    platform's SIGKILL is retried without sending twice), then exits.
    """

    def execute_job(self, job: Job, queue: Queue):
        if queue.name not in IN_PROCESS_QUEUES:
            return super().execute_job(job, queue)
        execution = self.prepare_execution(job)
        with _JobHeartbeats(self, job, execution):
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)


def make_worker(app, queues=QUEUE_NAMES, worker_class=WarmWorker, name: str | None = None, **kwargs):
    """A worker whose jobs run in `app`'s context.

    WarmWorker (a HerokuWorker): on SIGTERM (a PaaS restart) it stops a forked job and
    requeues it instead of waiting forever. Short worker TTL, job-monitoring and maintenance
    intervals (config RQ_WORKER_TTL, RQ_JOB_MONITORING_INTERVAL, RQ_MAINTENANCE_INTERVAL)
    so a job whose worker was SIGKILLed is noticed and retried within two minutes
    (measured: tests/reliability/test_crash.py, RELIABILITY.md).
    """
    job_class = type("BoundAppJob", (AppJob,), {"flask_app": app})
    connection = get_redis(app)
    return worker_class(
        [Queue(q, connection=connection, serializer=JSONSerializer, job_class=job_class) for q in queues],
        connection=connection,
        job_class=job_class,
        serializer=JSONSerializer,
        name=name,
        worker_ttl=kwargs.pop("worker_ttl", app.config.get("RQ_WORKER_TTL", 35)),
        maintenance_interval=kwargs.pop("maintenance_interval", app.config.get("RQ_MAINTENANCE_INTERVAL", 30)),
        job_monitoring_interval=kwargs.pop("job_monitoring_interval", app.config.get("RQ_JOB_MONITORING_INTERVAL", 10)),
        **kwargs,
    )


# How often a running worker checks that Redis still knows it (one SISMEMBER).
REGISTRATION_CHECK_SECONDS = 5.0


def restore_registration(worker) -> bool:
    """Register `worker` in Redis again if Redis no longer lists it; True if it did.

    RQ registers a worker once, when it starts working: its hash (birth, queues,
    pid, host, state) and its entry in the sets `Worker.all()` reads. If Redis then
    loses its data (restarted without persistence, FLUSHALL, a failover), the worker
    goes on taking jobs, but its heartbeat only refreshes `last_heartbeat` and the
    TTL, so nobody sees it again: /healthz reports 0 workers and the ops page none.
    This writes the same registration from the worker's own fields (RQ's
    `serialize()` and `worker_registration.register`, as `register_birth` does),
    keeping its birth date. A worker that has registered its death is left alone
    (WATCH: if the death lands meanwhile, nothing is written).
    """
    connection = worker.connection
    if worker.birth_date is None or worker.last_heartbeat is None:
        return False  # not working yet: RQ's own register_birth comes first
    if connection.sismember(worker.redis_workers_keys, worker.key):
        return False
    with connection.pipeline() as pipe:
        try:
            pipe.watch(worker.key)
            if pipe.hexists(worker.key, "death"):
                return False
            pipe.multi()
            fields = {**worker.serialize(), "last_heartbeat": utcformat(rq_now())}
            if worker.get_state():
                fields["state"] = str(worker.get_state())
            pipe.hset(worker.key, mapping=fields)
            worker_registration.register(worker, pipe)
            pipe.expire(worker.key, worker.worker_ttl + 60)
            pipe.execute()
        except WatchError:
            return False
    log.warning("worker %s was missing from Redis (restarted empty?): registered it again", worker.name)
    return True


class RegistrationKeeper(threading.Thread):
    """Calls `restore_registration(worker)` every few seconds while the worker works.

    A thread of our own beside RQ's work loop (which blocks in BLPOP or watches a
    job and offers no periodic hook short of overriding its internals). Forked work
    horses do not inherit it. Redis errors are left to RQ's loop, which waits for
    Redis itself; the next check tries again.
    """

    def __init__(self, worker, every: float = REGISTRATION_CHECK_SECONDS):
        super().__init__(name=f"registration-{worker.name}", daemon=True)
        self.worker = worker
        self.every = every
        self._stopped = threading.Event()

    def run(self):
        while not self._stopped.wait(self.every):
            try:
                restore_registration(self.worker)
            except RedisError:
                pass
            except Exception:  # noqa: BLE001 - never let the check end the thread
                log.exception("checking worker %s's registration failed", self.worker.name)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self.join(timeout)


def prepare_for_forking(app) -> None:
    """Once per worker process, before it forks a work horse for each job.

    A horse starts as a copy of this process and is thrown away after one job, so
    anything it sets up lazily is redone for every job: configuring the ORM mappers
    took most of a notification job's time. Done here once, every horse inherits it
    (the modules too: `create_app` imported every part, and the parts import what their
    jobs call at module level). No database connection crosses the fork:
    the parent's pool is emptied now, and each horse starts with an empty pool of its
    own (SQLAlchemy's advice for forked processes), so no two processes share a socket.
    """
    from sqlalchemy.orm import configure_mappers

    from .extensions import db

    configure_mappers()
    # Everything made so far lives as long as the process: out of the garbage collector's
    # sight, a full collection no longer walks it (a pause in the middle of a warm job), and
    # a horse's pages stay shared with the parent instead of being copied when GC touches them.
    gc.collect()
    gc.freeze()
    with app.app_context():
        engines = list(db.engines.values())
        for engine in engines:
            engine.dispose()
    os.register_at_fork(after_in_child=lambda: [engine.dispose(close=False) for engine in engines])


def run_burst(app, queues=QUEUE_NAMES, with_scheduler: bool = False, max_jobs: int | None = None) -> bool:
    """Drain the queues with an in-process worker (used by tests and `make run` checks)."""
    worker = make_worker(app, queues, worker_class=SimpleWorker, name=f"burst-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    return worker.work(burst=True, with_scheduler=with_scheduler, max_jobs=max_jobs, logging_level="WARNING")


def report_progress(done: int, total: int, **extra) -> None:
    """Record a long job's progress in its RQ meta (read by the ops dashboard)."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return
    job.meta["progress"] = {"done": done, "total": total, **extra}
    job.save_meta()
