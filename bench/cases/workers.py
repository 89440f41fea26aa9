"""Worker cases: throughput (events/s, one worker), end-to-end latency, and worker memory over many jobs.

Ours is always a real `python worker.py` process (the Procfile's worker: WarmWorker, which
handles outbox events in its own process and forks a horse for everything else). The
baseline is what a team gets from RQ out of the box: a stock `rq worker` (a fork per job)
running no-op jobs, on the same Redis. Throughput also reports the floor of any Python
worker, a warm non-forking no-op (`bench.worker_proc`: RQ's SimpleWorker), and ours with
two worker.py processes. Memory watches worker.py's own RSS over many event jobs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from tests.support.processes import wait_for

from .. import jobs as bench_jobs
from .. import seed
from ..harness import PROJECT_ROOT, BenchEnv, CaseResult, Measurement, percentile, python_subprocess

TARGETS = {
    "throughput": "≥ 1.0× a stock `rq worker`'s no-op jobs/s (stretch 3×)",
    "e2e": "p50 and p99 ≤ 1.5× the stock RQ no-op round trip",
    "memory": "RSS after all jobs within 10% of RSS after the first 1,000",
}


def _redis(env: BenchEnv):
    from deltacrown.queue import get_redis

    return get_redis(env.app)


STOCK_RQ = "stock `rq worker` (fork per job)"
SIMPLE_FLOOR = "warm SimpleWorker (no fork)"


def _stock_rq_worker_command(env: BenchEnv, *queues: str) -> list[str]:
    """RQ's own CLI worker as installed: a fork per job, no app; JSON because our queues are JSON."""
    rq_cli = str(Path(sys.executable).with_name("rq"))
    return [rq_cli, "worker", "--url", env.redis_url, "--serializer", "json", "--path", str(PROJECT_ROOT),
            "--logging_level", "WARNING", *queues]


@contextlib.contextmanager
def worker_process(env: BenchEnv, *queues: str, module: str | None = None, stock: bool = False,
                   processes: int = 1):
    """`python worker.py QUEUES` (or `python -m module QUEUES`, or a stock `rq worker`) on this
    database and Redis; `processes` of them at once."""
    redis = _redis(env)
    before = Worker.count(connection=redis)
    procs = []
    for _ in range(processes):
        if module:
            procs.append(python_subprocess(module, *queues, env=env.subprocess_env()))
        elif stock:
            procs.append(subprocess.Popen(_stock_rq_worker_command(env, *queues), cwd=str(PROJECT_ROOT),
                                          env=env.subprocess_env()))
        else:
            procs.append(subprocess.Popen([sys.executable, "worker.py", *queues], cwd=str(PROJECT_ROOT),
                                          env=env.subprocess_env()))
    try:
        if not module:
            wait_for(lambda: Worker.count(connection=redis) >= before + processes
                     or any(p.poll() is not None for p in procs), 60, interval=0.02, message="workers to register")
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}")
        yield procs[0] if processes == 1 else procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _queue(env: BenchEnv, name: str) -> Queue:
    from deltacrown.queue import get_queue

    with env.app.app_context():
        return get_queue(name)


def _drain_rate(env: BenchEnv, enqueue_jobs, queue_names, count: int, timeout: float, finished_at=None,
                **workers) -> float:
    """Enqueue `count` jobs, start the worker(s), wait until all finished; per second from the
    jobs' own stamps (first started → last ended, or → `finished_at()` when given, e.g. the last
    event's handled time), so process start-up is not counted."""
    job_ids = enqueue_jobs()
    assert len(job_ids) == count
    redis = _redis(env)
    from deltacrown.queue import AppJob

    def all_done():
        statuses = [j.get_status(refresh=False) if j else None
                    for j in AppJob.fetch_many(job_ids, connection=redis, serializer=JSONSerializer)]
        failed = [s for s in statuses if s is not None and s.value == "failed"]
        if failed:
            raise RuntimeError(f"{len(failed)} benchmark jobs failed (see the worker's log)")
        return all(s is not None and s.value == "finished" for s in statuses)

    with worker_process(env, *queue_names, **workers):
        wait_for(all_done, timeout, interval=0.2, message=f"{count} jobs to finish")
    jobs = AppJob.fetch_many(job_ids, connection=redis, serializer=JSONSerializer)
    first = min(j.started_at for j in jobs)
    last = finished_at() if finished_at else max(j.ended_at for j in jobs)
    return count / (_utc(last) - _utc(first)).total_seconds()


def _utc(moment):
    from datetime import timezone

    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _noop_ids(env: BenchEnv, count: int) -> list[str]:
    q = _queue(env, "default")
    with env.app.app_context():
        return [q.enqueue(bench_jobs.noop, result_ttl=3600).id for _ in range(count)]


def _rate_measurement(label: str, rates: list[float]) -> Measurement:
    rates = sorted(rates)
    m = Measurement(label, value=rates[len(rates) // 2], unit="jobs/s")
    m.label = f"{label}: runs " + ", ".join(f"{r:,.0f}" for r in rates) + " jobs/s"
    return m


def run_throughput(env: BenchEnv) -> CaseResult:
    s = env.sizes
    result = CaseResult("throughput", env.kind, size=f"{s.throughput_jobs:,} events per run, one worker.py",
                        target=TARGETS["throughput"], ratio_label="ours / stock rq worker no-op (per second)")
    timeout = 60 + s.throughput_jobs / 5
    noop = lambda: _noop_ids(env, s.throughput_jobs)  # noqa: E731
    stock = [_drain_rate(env, noop, ["default"], s.throughput_jobs, timeout, stock=True) for _ in range(s.repeats)]
    result.baseline = _rate_measurement(f"no-op jobs, {STOCK_RQ}", stock)
    ours = _notification_event_jobs(env)
    if ours is None:
        result.status, result.reason = "not run", _PIPELINE_MISSING
        return result
    prepare, enqueue, check = ours

    def last_handled():
        from sqlalchemy import func, select

        from deltacrown.outbox.models import OutboxEvent

        with env.app.app_context():
            moment = env.db.session.scalar(select(func.max(OutboxEvent.handled_at)))
            env.db.session.remove()
        return moment

    def events_per_second(**workers) -> list[float]:
        rates = []
        for _ in range(s.repeats):
            prepare(s.throughput_jobs)
            rates.append(_drain_rate(env, enqueue, ["notifications", "default"], s.throughput_jobs, timeout,
                                     finished_at=last_handled, **workers))
            check()
        return rates

    result.ours = _rate_measurement("outbox events handled (handle_event jobs), one worker.py", events_per_second())
    two = _rate_measurement("two worker.py", events_per_second(processes=2))
    floor = _rate_measurement(SIMPLE_FLOOR, [
        _drain_rate(env, noop, ["default"], s.throughput_jobs, timeout, module="bench.worker_proc")
        for _ in range(s.repeats)])
    result.ratio = result.ours.value / result.baseline.value
    result.met = result.ratio >= 1.0
    result.notes.append(f"stretch 3×: {'met' if result.ratio >= 3 else 'not met'}; {two.label} "
                        f"(median {two.value:,.0f}/s, {two.value / result.baseline.value:.2f}× the stock no-op); "
                        f"floor of any Python worker, no-op jobs in a {floor.label} (median {floor.value:,.0f}/s): "
                        f"ours is {result.ours.value / floor.value:.2f}× it; each event: roster_changed for a team "
                        "of 6 (reads the event, the team, its members and their preferences; writes 6 in-app "
                        "notifications); per second from the first job's start to the last event's handled time (a job "
                        "also handles the ready events after its own; the later jobs then find theirs handled)")
    return result


_PIPELINE_MISSING = "the event pipeline (deltacrown.outbox.dispatch.handle_event) is not on main yet"


def _notification_event_jobs(env: BenchEnv):
    """(prepare(n), enqueue() -> job ids, check()) for outbox event jobs, or None before the pipeline lands.

    The events are roster_changed (in-app only by default) for a team of 6 players: each job
    reads the event, the team, its members and their preferences, and writes 6 notifications.
    """
    try:
        from deltacrown.outbox.dispatch import handle_event
    except ImportError:
        return None
    from sqlalchemy import delete, func, insert, select

    from deltacrown.notifications.models import Notification
    from deltacrown.outbox.models import OutboxEvent
    from deltacrown.teams.models import Team
    from deltacrown.timeutil import utcnow

    db, state = env.db, {}

    def prepare(n):
        with env.app.app_context():
            if "team" not in state:
                members = seed.users(6)
                db.session.execute(insert(Team.__table__), [{"name": "Nova", "captain_id": members[0], "points": 0,
                                                            "wins": 0, "losses": 0, "created_at": seed.EPOCH}])
                state["team"] = db.session.scalar(select(Team.id))
                seed.memberships(state["team"], members)
                state["members"] = members
            db.session.execute(delete(Notification))
            db.session.execute(delete(OutboxEvent))
            now = utcnow()
            # Written as relayed: `enqueue` below enqueues their jobs (the commit's relay must not too).
            db.session.execute(insert(OutboxEvent.__table__), [
                {"type": "roster_changed", "created_at": now, "relayed_at": now,
                 "payload": {"team_id": state["team"], "user_id": state["members"][-1], "action": "joined",
                             "actor_id": None}} for _ in range(n)])
            db.session.commit()
            state["events"] = list(db.session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)))
            state["n"] = n

    def enqueue():
        # A job per event, as a relay of one-event commits makes them; a Redis pipeline per 1,000.
        with env.app.app_context():
            events = state["events"]
            return [job.id for at in range(0, len(events), 1000)
                    for job in handle_event.enqueue_many([(event_id,) for event_id in events[at:at + 1000]])]

    def check():
        with env.app.app_context():
            written = db.session.scalar(select(func.count()).select_from(Notification))
            db.session.remove()
        if written != state["n"] * len(state["members"]):
            raise AssertionError(f"handle_event jobs wrote {written} notifications, expected "
                                 f"{state['n'] * len(state['members'])}")

    return prepare, enqueue, check


def run_e2e(env: BenchEnv) -> CaseResult:
    s = env.sizes
    result = CaseResult("e2e", env.kind, size=f"{s.e2e_trips:,} sequential round trips, one worker.py",
                        target=TARGETS["e2e"], ratio_label="ours / no-op, worse of p50 and p99")
    q = _queue(env, "default")
    latencies = []
    import time

    with worker_process(env, "default", stock=True):
        with env.app.app_context():
            for _ in range(s.e2e_trips + 3):
                start = time.perf_counter()
                job = q.enqueue(bench_jobs.noop, result_ttl=3600)
                if job.latest_result(timeout=30) is None:
                    raise TimeoutError("no-op job did not finish within 30 s")
                latencies.append(time.perf_counter() - start)
    latencies = latencies[3:]  # the first trips warm the worker up
    result.baseline = _latency_measurement(f"no-op enqueue → finished (Result stream), {STOCK_RQ}", latencies)
    try:
        from deltacrown.outbox.relay import relay  # noqa: F401
        from deltacrown.teams.api import invite  # noqa: F401
    except ImportError:
        result.status, result.reason = "not run", ("the teams/notifications API and the event pipeline are not on "
                                                   "main yet")
        return result
    trips = _api_round_trips(env, s.e2e_trips + 3)[3:]
    latencies = [total for total, _ in trips]
    result.ours = _latency_measurement("POST invite → invitee's GET /api/v1/notifications shows it", latencies)
    p50 = percentile(result.ours.seconds, 50) / percentile(result.baseline.seconds, 50)
    p99 = percentile(result.ours.seconds, 99) / percentile(result.baseline.seconds, 99)
    result.ratio = max(p50, p99)
    result.met = result.ratio <= 1.5
    result.notes.append(f"ratios: p50 {p50:.2f}, p99 {p99:.2f}; Flask test client in the bench process (not "
                        "gunicorn), a real worker.py process running the event's job in its own process; the invitee polls its "
                        "notifications every ~1 ms (each poll is a full API request), so ours is quantised by "
                        "one poll; invitees opted out of email so no SMTP send queues behind the next trip")
    result.notes.append(_trip_split(trips, percentile(latencies, 99)))
    return result


def _trip_split(trips: list[tuple[float, float]], p99: float) -> str:
    """Where a trip's time went: the POST (the web request, its commit and the relay's push), then
    the wait for the worker's row to show in a poll. A tail is read from the trips at or above p99."""
    def split(selected):
        return (f"POST {statistics.median(post for _, post in selected) * 1000:.1f} ms, then "
                f"{statistics.median(total - post for total, post in selected) * 1000:.1f} ms to the row")

    slowest = sorted((trip for trip in trips if trip[0] >= p99), reverse=True)
    each = "; ".join(f"{total * 1000:.1f} = POST {post * 1000:.1f} + {(total - post) * 1000:.1f}"
                     for total, post in slowest)
    return f"a trip, split (medians): all trips {split(trips)}; the trips at or above p99 (ms): {each}"


def _api_round_trips(env: BenchEnv, count: int) -> list[tuple[float, float]]:
    """Captain invites player k through the API; time until player k's API lists the invite.
    Each trip is (seconds in all, seconds of its POST)."""
    import time

    from sqlalchemy import insert, select, update

    from deltacrown.notifications.models import NotificationPreference
    from deltacrown.teams.models import Team

    db = env.db
    with env.app.app_context():
        ids = seed.users(count + 1, with_tokens=True)
        db.session.execute(update(NotificationPreference).values(opt_out_email=True))
        db.session.execute(insert(Team.__table__), [{"name": "Nova", "captain_id": ids[0], "points": 0, "wins": 0,
                                                    "losses": 0, "created_at": seed.EPOCH}])
        team_id = db.session.scalar(select(Team.id))
        db.session.commit()
        seed.memberships(team_id, ids[:1])
        db.session.remove()
    client = env.app.test_client()
    captain = {"Authorization": f"Bearer {seed.user_token(1)}"}
    latencies = []
    with worker_process(env, "notifications", "default"):
        for k, uid in enumerate(ids[1:], start=2):
            player = {"Authorization": f"Bearer {seed.user_token(k)}"}
            start = time.perf_counter()
            response = client.post(f"/api/v1/teams/{team_id}/invites", json={"user_id": uid}, headers=captain)
            posted = time.perf_counter() - start
            if response.status_code != 201:
                raise AssertionError(f"invite: {response.status_code} {response.get_data(as_text=True)[:300]}")

            def arrived():
                items = client.get("/api/v1/notifications?limit=1", headers=player).get_json()["items"]
                return items and items[0]["type"] == "invite_sent"

            wait_for(arrived, 30, interval=0.001, message="the invite notification")
            latencies.append((time.perf_counter() - start, posted))
    return latencies


def _latency_measurement(label: str, latencies: list[float]) -> Measurement:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Measurement(label, seconds=latencies, value=p99, unit="s",
                       display=f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


def run_memory(env: BenchEnv) -> CaseResult:
    """Notification event jobs (handle_event) when the pipeline is there, else a DB-touching stand-in;
    the parent samples the worker's RSS from /proc while the jobs drain."""
    import time

    s = env.sizes
    result = CaseResult("memory", env.kind, size=f"{s.memory_jobs:,} jobs in one worker.py process",
                        target=TARGETS["memory"], ratio_label=f"RSS at end / RSS after first {s.memory_first:,}")
    q = _queue(env, "notifications")
    events = _notification_event_jobs(env)
    if events is not None:
        prepare, enqueue, check = events
        prepare(s.memory_jobs)
        enqueue()
        job_kind = "handle_event(roster_changed) jobs, 6 notifications each"
    else:
        check = None
        with env.app.app_context():
            seed.users(100, preferences=False)
            for start in range(1, s.memory_jobs + 1, 5_000):
                q.enqueue_many([Queue.prepare_data(bench_jobs.memory_probe, args=(i, 10**9), result_ttl=0)
                                for i in range(start, min(start + 5_000, s.memory_jobs + 1))])
        job_kind = "stand-in jobs (a SELECT through the app's session + commit each)"
    total = q.count
    # worker.py itself: the event jobs run in its own process (WarmWorker), so its RSS is theirs.
    proc = subprocess.Popen([sys.executable, "worker.py", "notifications"], cwd=str(PROJECT_ROOT),
                            env=env.subprocess_env())
    samples = []  # (jobs done, RSS bytes), sampled from outside the worker
    page = os.sysconf("SC_PAGE_SIZE")
    usage = None
    running = q.started_job_registry
    stopping = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        try:
            with open(f"/proc/{proc.pid}/statm") as f:
                rss = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            rss = 0
        left = q.count
        if rss and not stopping:
            samples.append((total - left, rss))
        if not left and not running.count and not stopping:
            proc.send_signal(signal.SIGTERM)  # all done: stop it (warm shutdown) and read its rusage
            stopping = True
        time.sleep(0.05)  # sampling interval, not a wait for completion
    if proc.returncode != 0 or q.count:
        raise RuntimeError(f"worker exited with {proc.returncode}, {q.count} jobs left")
    if check:
        check()
    after_first = [rss for done, rss in samples if done >= s.memory_first]
    if len(after_first) < 2:
        raise RuntimeError("too few RSS samples; raise memory_jobs")
    first_rss, end_rss = after_first[0], samples[-1][1]
    result.baseline = Measurement(f"RSS after {s.memory_first:,} jobs", value=first_rss / 2**20, unit="MiB")
    result.ours = Measurement(f"RSS after {samples[-1][0]:,} jobs (last sample)", value=end_rss / 2**20, unit="MiB",
                              peak_bytes=usage.ru_maxrss * 1024 if usage else None)
    result.ratio = end_rss / first_rss
    result.met = result.ratio <= 1.10
    shown = samples[:: max(1, len(samples) // 10)] + [samples[-1]]
    result.notes.append(f"{job_kind}; RSS (MiB) by jobs done, sampled every 50 ms from /proc: "
                        + ", ".join(f"{d:,}: {r / 2**20:.1f}" for d, r in shown))
    result.notes.append("peak column: the worker process's ru_maxrss")
    return result
