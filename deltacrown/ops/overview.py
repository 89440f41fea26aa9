"""What the ops dashboard, /healthz and /metrics read: RQ state (through RQ's own
APIs: queues, registries, Worker.all, job fetch), the scheduler's heartbeat, the
recurring-job table, and the delivery, outbox and payout tables.

Each reader takes an explicit Redis connection or works on the current app's
database session, and returns plain dataclasses the views render.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import joinedload
from rq import Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from ..economy.models import CoinTransaction
from ..extensions import db
from ..notifications.models import DELIVERY_STATUSES, Delivery
from ..notifications.types import CHANNELS
from ..outbox.models import OutboxEvent
from ..queue import QUEUE_NAMES, AppJob
from ..timeutil import utcnow
from . import runs, schedule, stats
from .scheduler import read_heartbeat

# A worker that has not beaten within this long is presumed dead (our workers
# beat at least every 35 s, see make_worker's worker_ttl).
WORKER_HEARTBEAT_MAX_AGE = timedelta(seconds=90)


def _age(then: datetime | None, now: datetime) -> float | None:
    if then is None:
        return None
    if then.tzinfo is None:  # RQ stores naive UTC
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (now - then).total_seconds())


def _fetch_jobs(connection, job_ids):
    return [j for j in AppJob.fetch_many(job_ids, connection=connection, serializer=JSONSerializer) if j]


# --- queues and workers ------------------------------------------------------

@dataclass
class QueueInfo:
    name: str
    length: int
    oldest_age: float | None  # seconds the oldest waiting job has waited
    started: int
    failed: int
    scheduled: int

    @property
    def level(self) -> str:
        return stats.queue_level(self.length)


def queues(connection, now: datetime | None = None) -> list[QueueInfo]:
    now = now or utcnow()
    infos = []
    for name in QUEUE_NAMES:
        queue = queue_on(connection, name)
        oldest = None
        first = queue.get_job_ids(0, 1)
        if first:
            jobs = _fetch_jobs(connection, first)
            oldest = _age(jobs[0].enqueued_at, now) if jobs else None
        infos.append(QueueInfo(name=name, length=queue.count, oldest_age=oldest,
                               started=queue.started_job_registry.count,
                               failed=queue.failed_job_registry.count,
                               scheduled=queue.scheduled_job_registry.count))
    return infos


def queue_on(connection, name: str):
    from rq import Queue

    return Queue(name, connection=connection, serializer=JSONSerializer, job_class=AppJob)


@dataclass
class WorkerInfo:
    name: str
    hostname: str | None
    pid: int | None
    state: str
    queues: list[str]
    current_job_id: str | None
    current_job_func: str | None
    last_heartbeat: datetime | None
    heartbeat_age: float | None

    @property
    def alive(self) -> bool:
        return self.heartbeat_age is not None and self.heartbeat_age <= WORKER_HEARTBEAT_MAX_AGE.total_seconds()


def workers(connection, now: datetime | None = None) -> list[WorkerInfo]:
    now = now or utcnow()
    infos = []
    for worker in Worker.all(connection=connection, job_class=AppJob, serializer=JSONSerializer):
        job_id = worker.get_current_job_id()
        job_func = None
        if job_id:
            jobs = _fetch_jobs(connection, [job_id])
            job_func = jobs[0].func_name if jobs else None
        heartbeat = worker.last_heartbeat
        if heartbeat is not None and heartbeat.tzinfo is None:
            heartbeat = heartbeat.replace(tzinfo=timezone.utc)
        infos.append(WorkerInfo(name=worker.name, hostname=worker.hostname, pid=worker.pid,
                                state=str(worker.get_state()), queues=worker.queue_names(),
                                current_job_id=job_id, current_job_func=job_func,
                                last_heartbeat=heartbeat, heartbeat_age=_age(heartbeat, now)))
    return sorted(infos, key=lambda w: w.name)


def live_worker_count(connection, now: datetime | None = None) -> int:
    return sum(1 for w in workers(connection, now) if w.alive)


@dataclass
class RunningJob:
    id: str
    queue: str
    func: str | None
    started_at: datetime | None
    progress_done: int | None = None
    progress_total: int | None = None

    @property
    def percent(self) -> int | None:
        if self.progress_total:
            return min(100, round(100 * (self.progress_done or 0) / self.progress_total))
        return None


def running_jobs(connection) -> list[RunningJob]:
    """Jobs in the started registries, with their progress ({done, total} in meta)."""
    running = []
    for name in QUEUE_NAMES:
        registry = StartedJobRegistry(name, connection=connection, job_class=AppJob, serializer=JSONSerializer)
        for job in _fetch_jobs(connection, registry.get_job_ids()):
            progress = job.meta.get("progress") or {}
            done, total = progress.get("done"), progress.get("total")
            ok = isinstance(done, int) and isinstance(total, int) and total > 0
            started = job.started_at.replace(tzinfo=timezone.utc) if job.started_at else None
            running.append(RunningJob(id=job.id, queue=name, func=job.func_name, started_at=started,
                                      progress_done=done if ok else None, progress_total=total if ok else None))
    return running


# --- failed jobs -------------------------------------------------------------

@dataclass
class FailedJob:
    id: str
    queue: str
    func: str | None
    args: str
    error: str
    traceback: str
    failed_at: datetime | None


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def failed_jobs(connection, limit: int = 50) -> tuple[list[FailedJob], int]:
    """The most recently failed jobs of every queue (newest first), and the total."""
    found, total = [], 0
    for name in QUEUE_NAMES:
        registry = FailedJobRegistry(name, connection=connection, job_class=AppJob, serializer=JSONSerializer)
        total += registry.count
        for job in _fetch_jobs(connection, registry.get_job_ids(0, limit - 1, desc=True)):
            result = job.latest_result()
            trace = (result.exc_string if result is not None else None) or ""
            try:
                call = json.dumps({"args": list(job.args), "kwargs": job.kwargs}) if job.kwargs else \
                    json.dumps(list(job.args))
            except Exception:  # noqa: BLE001 - undecodable arguments are shown as such
                call = "(arguments cannot be decoded)"
            ended = job.ended_at.replace(tzinfo=timezone.utc) if job.ended_at else None
            found.append(FailedJob(id=job.id, queue=name, func=job.func_name, args=call,
                                   error=_last_line(trace) or "(no error recorded)", traceback=trace,
                                   failed_at=ended))
    found.sort(key=lambda j: j.failed_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    return found[:limit], total


# --- the scheduler and the recurring jobs -------------------------------------

@dataclass
class SchedulerState:
    """The scheduler process as its latest heartbeat shows it (none: never ran, or Redis lost it)."""
    last_heartbeat: datetime | None
    age: float | None  # seconds since that heartbeat
    stale_after: float  # SCHEDULER_HEARTBEAT_STALE_SECONDS
    name: str | None = None
    pid: int | None = None
    host: str | None = None

    @property
    def alive(self) -> bool:
        return self.age is not None and self.age <= self.stale_after

    @property
    def status(self) -> str:
        return "ok" if self.alive else "down"


def scheduler_state(connection, stale_after: float, now: datetime | None = None) -> SchedulerState:
    now = now or utcnow()
    beat = read_heartbeat(connection)
    if beat is None:
        return SchedulerState(last_heartbeat=None, age=None, stale_after=stale_after)
    at = datetime.fromtimestamp(float(beat["at"]), tz=timezone.utc)
    return SchedulerState(last_heartbeat=at, age=_age(at, now), stale_after=stale_after, name=beat.get("name"),
                          pid=beat.get("pid"), host=beat.get("host"))


@dataclass
class RecurringJob:
    spec: schedule.JobSpec
    next_run: datetime | None
    next_run_source: str  # "scheduler" (registered) or "cron" (computed from the table)
    last_run: dict | None  # from runs.last_runs
    # Seconds by which a registered job's next run is further in the past than a live
    # scheduler would leave it (see recurring_jobs); None when it is not overdue.
    overdue_by: float | None = None

    @property
    def overdue(self) -> bool:
        return self.overdue_by is not None

    @property
    def last_started(self) -> datetime | None:
        if not self.last_run or "started" not in self.last_run:
            return None  # queued, or never started
        return datetime.fromtimestamp(self.last_run["started"], tz=timezone.utc)


def next_cron_time(cron: str, tz_name: str, now: datetime | None = None) -> datetime:
    import crontab

    now = (now or utcnow()).astimezone(ZoneInfo(tz_name))
    return crontab.CronTab(cron).next(now=now, return_datetime=True).astimezone(timezone.utc)


def recurring_jobs(connection, scheduler_tz: str, now: datetime | None = None,
                   overdue_after: float | None = None) -> list[RecurringJob]:
    """Every RECURRING_JOBS entry: next run (as registered with rq-scheduler, else from
    its cron line in the scheduler time zone) and its last recorded run. A registered job
    whose next run is more than `overdue_after` seconds in the past is overdue: the
    scheduler moves a due job within one SCHEDULER_INTERVAL, so it is not doing its rounds."""
    from rq_scheduler import Scheduler

    now = now or utcnow()

    specs = list(schedule.RECURRING_JOBS)
    last = runs.last_runs(connection) if connection is not None else {}
    scores = []
    if connection is not None:
        pipe = connection.pipeline(transaction=False)
        for spec in specs:
            pipe.zscore(Scheduler.scheduled_jobs_key, schedule.scheduler_job_id(spec))
        scores = pipe.execute()
    result = []
    for i, spec in enumerate(specs):
        score = scores[i] if scores else None
        overdue_by = None
        if score is not None:
            next_run, source = datetime.fromtimestamp(float(score), tz=timezone.utc), "scheduler"
            late = (now - next_run).total_seconds()
            if overdue_after is not None and late > overdue_after:
                overdue_by = late
        else:
            next_run, source = next_cron_time(spec.cron, scheduler_tz, now), "cron"
        result.append(RecurringJob(spec=spec, next_run=next_run, next_run_source=source,
                                   last_run=last.get(spec.name), overdue_by=overdue_by))
    return result


# --- deliveries, outbox, payouts (database) ----------------------------------

@dataclass
class ChannelDeliveries:
    """Deliveries of one channel by status (one attribute per DELIVERY_STATUSES entry)."""
    channel: str
    sent: int = 0
    failed: int = 0
    # Refused or bounced by the receiving server: a failure of that send.
    bounced: int = 0
    pending: int = 0
    # Not sent because the recipient withdrew consent, or the address is suppressed: neither a
    # success nor a failure, so outside `total` (the chart's bars) and the success rate.
    skipped: int = 0
    suppressed: int = 0
    retried: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.bounced + self.pending

    @property
    def success_rate(self) -> float | None:
        done = self.sent + self.failed + self.bounced
        return self.sent / done if done else None


def deliveries_by_channel() -> list[ChannelDeliveries]:
    by_channel = {c: ChannelDeliveries(c) for c in CHANNELS}
    rows = db.session.execute(
        select(Delivery.channel, Delivery.status, func.count(), func.sum(
            case((Delivery.attempts > 1, 1), else_=0)))
        .group_by(Delivery.channel, Delivery.status)
    )
    for channel, status, count, retried in rows:
        entry = by_channel.setdefault(channel, ChannelDeliveries(channel))
        if status in DELIVERY_STATUSES:
            setattr(entry, status, int(count))
        entry.retried += int(retried or 0)
    return list(by_channel.values())


@dataclass
class OutboxBacklog:
    waiting: int
    oldest_created_at: datetime | None
    oldest_age: float | None


def outbox_backlog(now: datetime | None = None) -> OutboxBacklog:
    now = now or utcnow()
    # func.min keeps the column's type, so the timestamp comes back as aware UTC.
    count, oldest = db.session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.relayed_at.is_(None))
    ).one()
    return OutboxBacklog(waiting=int(count), oldest_created_at=oldest, oldest_age=_age(oldest, now))


@dataclass
class PayoutCheck:
    keys_checked: int
    duplicates: list[tuple[str, int, int]] = field(default_factory=list)  # (dedup_key, user_id, times)

    @property
    def ok(self) -> bool:
        return not self.duplicates


def recent_payouts(limit: int = 20):
    return list(db.session.scalars(
        select(CoinTransaction).options(joinedload(CoinTransaction.user))
        .order_by(CoinTransaction.id.desc()).limit(limit)))


def payout_dedup_check() -> PayoutCheck:
    """Live check: no dedup key credits the same user more than once."""
    keyed = CoinTransaction.dedup_key.is_not(None)
    keys = db.session.scalar(select(func.count(func.distinct(CoinTransaction.dedup_key))).where(keyed))
    dupes = db.session.execute(
        select(CoinTransaction.dedup_key, CoinTransaction.user_id, func.count())
        .where(keyed).group_by(CoinTransaction.dedup_key, CoinTransaction.user_id)
        .having(func.count() > 1).order_by(CoinTransaction.dedup_key).limit(50)
    ).all()
    return PayoutCheck(keys_checked=int(keys or 0), duplicates=[(k, u, int(n)) for k, u, n in dupes])

