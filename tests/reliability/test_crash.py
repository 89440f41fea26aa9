"""Crash: a worker SIGKILLed in the middle of a payout, a digest run and an announcement.

Each round starts a real worker (worker.py's main: HerokuWorker + work horse)
that pauses at a checkpoint (deltacrown/signals.py, tests/support/pausing.py)
so the kill lands at an exact moment, kills the whole process group with SIGKILL, then recovers the
job the way RQ does (its started-registry cleanup retries the abandoned job)
and lets a worker run the retry. The first payout round recovers with nothing
accelerated: a fresh `python worker.py` finds the dead worker's job by its own
maintenance and retries it through its own scheduler (RELIABILITY_NATURAL_ROUNDS).

Rounds: RELIABILITY_CRASH_ROUNDS (default 20) per scenario.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from deltacrown.accounts.models import User
from deltacrown.economy.jobs import distribute_payouts
from deltacrown.dedup import DedupKey
from deltacrown.economy.models import CoinTransaction
from deltacrown.economy.payouts import payout_dedup_key
from deltacrown.extensions import db
from deltacrown.notifications.announcements import new_announcement_id
from deltacrown.notifications.jobs import batch_send_notifications, send_digests
from deltacrown.notifications.models import Delivery, Notification, NotificationDigest, NotificationPreference
from deltacrown.queue import fetch_job, run_burst
from deltacrown.timeutil import utcnow
from tests.automation.money_factories import add_teams, add_tournament
from tests.conftest import make_test_app
from tests.support.processes import PYTHON, wait_for

from .conftest import PausedWorker, env_int, recover_abandoned_jobs, record_figures

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

ROUNDS = env_int("RELIABILITY_CRASH_ROUNDS", 20)
NATURAL_ROUNDS = env_int("RELIABILITY_NATURAL_ROUNDS", 1)


def job_status(app, job_id):
    job = fetch_job(job_id, app)
    return job.get_status() if job else None


def finish_retry(app, job_id):
    """Recover the dead worker's job (RQ's cleanup) and run the retry with a real RQ worker."""
    assert job_status(app, job_id) == "started"  # the dead worker still holds it
    assert recover_abandoned_jobs(app) == 1
    run_burst(app)
    assert job_status(app, job_id) == "finished", fetch_job(job_id, app).latest_result()
    return fetch_job(job_id, app).return_value()


# --- (a) payouts ----------------------------------------------------------------

def payout_rows(tournament_id):
    coins = db.session.scalars(select(CoinTransaction).where(
        CoinTransaction.dedup_key == payout_dedup_key(tournament_id))).all()
    keys = db.session.scalar(select(func.count()).select_from(DedupKey).where(
        DedupKey.key == payout_dedup_key(tournament_id)))
    db.session.rollback()
    return coins, keys


def test_worker_killed_mid_payout_pays_each_tournament_exactly_once(rapp, worker_env, spawn, tmp_path):
    env = worker_env()
    partial = duplicates = natural_seconds = 0
    for round_no in range(ROUNDS):
        with rapp.app_context():
            teams = add_teams(3)
            cup = add_tournament(status="completed", placements=teams)
            job_id = distribute_payouts.enqueue(cup).id
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "payout:after_coins", f"worker-{round_no}")
        worker.wait_paused()
        with rapp.app_context():  # at the moment of the kill: coins flushed in the job's transaction only
            coins, keys = payout_rows(cup)
            partial += bool(coins or keys)
        worker.kill()
        with rapp.app_context():
            coins, keys = payout_rows(cup)
            partial += bool(coins or keys)  # nothing of a killed transaction survives

        if round_no < NATURAL_ROUNDS:
            # Nothing accelerated: a new worker's own maintenance and scheduler retry the job.
            killed_at = time.monotonic()
            recovery = spawn([PYTHON, "worker.py"], env=env, name=f"recovery-{round_no}")
            wait_for(lambda: job_status(rapp, job_id) == "finished", timeout=240,
                     message="the dead worker's payout to be retried by a new worker")
            natural_seconds = round(time.monotonic() - killed_at, 1)
            recovery.stop()  # the next round's job is for the next paused worker
            # DESIGN: a job whose worker was SIGKILLed is retried within two minutes.
            assert natural_seconds < 120, natural_seconds
            result = fetch_job(job_id, rapp).return_value()
        else:
            result = finish_retry(rapp, job_id)
        assert result["status"] == "distributed"

        with rapp.app_context():
            coins, keys = payout_rows(cup)
            amounts = sorted(c.amount for c in coins)
            duplicates += max(0, len(coins) - 3) + max(0, keys - 1)
            assert amounts == [250, 500, 1000] and keys == 1, (round_no, amounts, keys)

    with rapp.app_context():  # every coin transaction exactly once, over all rounds
        per_key = Counter(db.session.scalars(select(CoinTransaction.dedup_key)))
        assert set(per_key.values()) == {3} and len(per_key) == ROUNDS
    assert partial == 0 and duplicates == 0
    record_figures("crash_payout", rounds=ROUNDS, killed=ROUNDS, partial=partial, duplicates=duplicates,
                   paid_once=len(per_key), natural_recovery_rounds=min(NATURAL_ROUNDS, ROUNDS),
                   natural_recovery_seconds=natural_seconds)


# --- (b) daily digests ------------------------------------------------------------

def add_digest_users(count, prefix):
    """Users whose digest is due now (00:00 UTC) with two unread notifications from yesterday."""
    now = utcnow()
    names = [f"{prefix}-{i}" for i in range(count)]
    db.session.execute(insert(User.__table__), [
        {"username": n, "email": f"{n}@example.com", "password_hash": "!", "is_admin": False,
         "timezone": "UTC", "created_at": now} for n in names])
    ids = list(db.session.scalars(select(User.id).where(User.username.in_(names)).order_by(User.id)))
    from datetime import time as clock

    db.session.execute(insert(NotificationPreference.__table__), [
        {"user_id": uid, "channels": {}, "opt_out_email": False, "opt_out_in_app": False, "opt_out_discord": False,
         "enable_daily_digest": True, "digest_time": clock(0, 0), "timezone": "UTC", "updated_at": now}
        for uid in ids])
    yesterday = now - timedelta(days=1)
    db.session.execute(insert(Notification.__table__), [
        {"user_id": uid, "type": "announcement", "title": f"News {k}", "body": "", "is_read": False,
         "created_at": yesterday.replace(hour=12), "dedup_key": f"seed:{uid}:{k}"} for uid in ids for k in (1, 2)])
    db.session.commit()
    return ids


@pytest.fixture
def digest_app(rapp, pg, redis_server, smtp_server):
    # Flask-Mail reads its settings when the app is built: a second app, sending to the stand-in.
    # DIGEST_CLAIM_TIMEOUT 1 s: the killed run's claims are stale a second later.
    app = make_test_app(pg, redis_server.url, DIGEST_CLAIM_TIMEOUT=1, **smtp_server.config())
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_worker_killed_mid_digest_run_sends_every_digest_exactly_once(digest_app, smtp_server, worker_env,
                                                                       spawn, tmp_path):
    app = digest_app
    env = worker_env(**smtp_server.env())
    per_round = 3
    sent_before_kill = 0
    everyone = []
    if utcnow().hour == 23 and utcnow().minute >= 50:
        pytest.skip("too close to midnight UTC: the digest date would change during the test")
    for round_no in range(ROUNDS):
        with app.app_context():
            ids = add_digest_users(per_round, f"d{round_no}-{uuid.uuid4().hex[:4]}")
            emails = {f"{u.email}" for u in db.session.scalars(select(User).where(User.id.in_(ids)))}
            job_id = send_digests.enqueue().id
        everyone += ids
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "digest:after_claim", f"worker-{round_no}")
        worker.wait_paused()
        sent_before_kill += sum(1 for m in smtp_server.messages if set(m.rcpt_tos) & emails)
        worker.kill()
        with app.app_context():
            claims = db.session.scalars(select(NotificationDigest).where(NotificationDigest.user_id.in_(ids))).all()
            assert len(claims) == per_round and not any(c.is_sent for c in claims)  # claimed, unsent
            newest_claim = max(c.created_at for c in claims)
            db.session.rollback()
        timeout = timedelta(seconds=app.config["DIGEST_CLAIM_TIMEOUT"])
        wait_for(lambda: utcnow() - newest_claim > timeout, 10, interval=0.05,
                 message="DIGEST_CLAIM_TIMEOUT to pass, so the claims count as stale")
        result = finish_retry(app, job_id)
        assert result["retried"] == per_round and result["sent"] == per_round, result

    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    with app.app_context():
        emails = {u.id: u.email for u in db.session.scalars(select(User).where(User.id.in_(everyone)))}
        rows = Counter((d.user_id, d.digest_date) for d in db.session.scalars(select(NotificationDigest)))
        unsent = db.session.scalar(select(func.count()).select_from(NotificationDigest)
                                   .where(NotificationDigest.is_sent.is_(False)))
    twice = sum(1 for uid in everyone if received[emails[uid]] > 1)
    lost = sum(1 for uid in everyone if received[emails[uid]] == 0)
    assert sent_before_kill == 0 and twice == 0 and lost == 0 and unsent == 0
    assert set(rows.values()) == {1} and len(rows) == len(everyone)
    record_figures("crash_digest", rounds=ROUNDS, killed=ROUNDS, digests=len(everyone), duplicates=twice,
                   lost=lost)


# --- (c) announcements --------------------------------------------------------------

def test_worker_killed_between_announcement_chunks_notifies_everyone_exactly_once(rapp, worker_env, spawn,
                                                                                   tmp_path):
    chunk, recipients = 5, 12
    rapp.config["ANNOUNCEMENT_CHUNK_SIZE"] = chunk
    env = worker_env(ANNOUNCEMENT_CHUNK_SIZE=chunk)
    now = utcnow()
    with rapp.app_context():
        db.session.execute(insert(User.__table__), [
            {"username": f"a-{i}", "email": f"a-{i}@example.com", "password_hash": "!", "is_admin": False,
             "timezone": "UTC", "created_at": now} for i in range(recipients)])
        db.session.commit()
    partial_seen = duplicates = lost = 0
    for round_no in range(ROUNDS):
        announcement = new_announcement_id()
        key = f"announcement:{announcement}"
        with rapp.app_context():
            job_id = batch_send_notifications.enqueue(None, "announcement", f"News {round_no}", "body", None,
                                                      announcement).id
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "announcement:after_chunk",
                              f"worker-{round_no}")
        worker.wait_paused()
        worker.kill()
        with rapp.app_context():
            written = db.session.scalar(select(func.count()).select_from(Notification)
                                        .where(Notification.dedup_key == key))
            db.session.rollback()
        assert written == chunk  # the first chunk was committed, the others not yet written
        partial_seen += 1
        result = finish_retry(rapp, job_id)
        assert result["announcement_id"] == announcement
        with rapp.app_context():
            per_user = Counter(db.session.scalars(select(Notification.user_id).where(Notification.dedup_key == key)))
            deliveries = Counter(db.session.scalars(
                select(Delivery.user_id).join(Notification, Notification.id == Delivery.notification_id)
                .where(Notification.dedup_key == key, Delivery.channel == "email")))
            db.session.rollback()
        duplicates += sum(n - 1 for n in per_user.values() if n > 1) + sum(n - 1 for n in deliveries.values() if n > 1)
        lost += recipients - len(per_user)
        assert set(per_user.values()) == {1} and len(per_user) == recipients, per_user
        assert set(deliveries.values()) == {1} and len(deliveries) == recipients, deliveries
    assert duplicates == 0 and lost == 0
    record_figures("crash_announcement", rounds=ROUNDS, killed=ROUNDS, recipients_per_round=recipients,
                   chunk_size=chunk, killed_after_first_chunk=partial_seen, notifications=ROUNDS * recipients,
                   duplicates=duplicates, lost=lost)


# --- (d) held sends: quiet hours and delayed emails ---------------------------------------

def add_held_users(prefix: str, now):
    """Two users whose emails are held: q (quiet hours ending a minute ago, in UTC) and d (an email
    delay of 5 minutes); each is sent two announcements 10 minutes ago, so every send is due now."""
    from datetime import time as clock

    def hhmm(moment):
        return clock(moment.hour, moment.minute)

    created = now - timedelta(minutes=10)
    names = [f"{prefix}-q", f"{prefix}-d"]
    db.session.execute(insert(User.__table__), [
        {"username": n, "email": f"{n}@example.com", "password_hash": "!", "is_admin": False,
         "timezone": "UTC", "created_at": created} for n in names])
    q, d = db.session.scalars(select(User.id).where(User.username.in_(names)).order_by(User.username.desc())).all()
    base = {"channels": {}, "opt_out_email": False, "opt_out_in_app": False, "opt_out_discord": False,
            "enable_daily_digest": False, "digest_time": clock(8), "timezone": "UTC", "updated_at": created}
    db.session.execute(insert(NotificationPreference.__table__), [
        {**base, "user_id": q, "quiet_hours_start": hhmm(created - timedelta(minutes=20)),
         "quiet_hours_end": hhmm(now - timedelta(minutes=1)), "email_after_unseen_minutes": 0},
        {**base, "user_id": d, "quiet_hours_start": None, "quiet_hours_end": None, "email_after_unseen_minutes": 5}])
    db.session.commit()
    return q, d, created


def test_worker_killed_holding_quiet_hours_and_delayed_emails_sends_each_once(digest_app, smtp_server, worker_env,
                                                                              spawn, tmp_path):
    import time_machine

    from deltacrown.notifications.held import sweep_held
    from deltacrown.notifications.service import NotificationService
    from rq.registry import ScheduledJobRegistry

    from deltacrown.queue import get_queue, get_redis

    app = digest_app
    env = worker_env(**smtp_server.env())
    expected: Counter = Counter()
    held_total = redis_lost_rounds = sent_before_kill = 0
    for round_no in range(ROUNDS):
        prefix = f"h{round_no}-{uuid.uuid4().hex[:4]}"
        with app.app_context():
            q, d, created = add_held_users(prefix, utcnow())
            with time_machine.travel(created, tick=False):  # written 10 minutes ago, held until now
                for k in (1, 2):
                    NotificationService().notify([q, d], "announcement", f"{prefix} news {k}", "", None,
                                                 f"crash:{prefix}:{k}")
            held = db.session.scalars(select(Delivery).where(Delivery.user_id.in_([q, d]))).all()
            assert len(held) == 4 and all(h.send_after is not None and h.status == "pending" for h in held)
            db.session.rollback()
        held_total += 4
        for who in ("q", "d"):
            for k in (1, 2):
                expected[(f"{prefix}-{who}@example.com", f"{prefix} news {k}")] = 1
        # Their held jobs are scheduled at their (past) times; due now, moved to the queue at once (a
        # killed worker's scheduler lock would otherwise hold RQ's scheduler back until it expires).
        with app.app_context():
            scheduled = ScheduledJobRegistry(queue=get_queue("sends"))
            assert len(scheduled.get_job_ids()) == 2  # one held job per user
            for job_id in scheduled.get_job_ids():
                scheduled.requeue(job_id)
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "held:before_send", f"worker-{round_no}")
        worker.wait_paused()
        sent_before_kill += sum(1 for m in smtp_server.messages if prefix in m.subject)
        worker.kill()
        if round_no % 2:
            # Redis loses everything too: the jobs are gone; the rows are the truth and the sweep re-creates them.
            get_redis(app).flushall()
            redis_lost_rounds += 1
            with app.app_context():
                assert sweep_held()["rescheduled"] == 2
        else:
            recover_abandoned_jobs(app)  # RQ's own recovery of the dead worker's job
        run_burst(app, with_scheduler=True)
        with app.app_context():
            statuses = Counter(db.session.scalars(select(Delivery.status).where(Delivery.user_id.in_([q, d]))))
            db.session.rollback()
        assert statuses == {"sent": 4}, (round_no, statuses)

    received = Counter((rcpt, m.subject.split(" ", 1)[1]) for m in smtp_server.messages for rcpt in m.rcpt_tos
                       if " news " in m.subject)
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    lost = sum(1 for key in expected if received[key] == 0)
    assert sent_before_kill == 0 and duplicates == 0 and lost == 0, (duplicates, lost)
    assert set(received) == set(expected)
    record_figures("crash_held_sends", rounds=ROUNDS, killed=ROUNDS, held_emails=held_total,
                   redis_lost_rounds=redis_lost_rounds, duplicates=duplicates, lost=lost)


# --- (e) a send, killed after its lease was taken ---------------------------------------

SEND_ROUNDS = min(ROUNDS, 6)


def add_email_to_send(prefix: str, via_event: bool) -> tuple[int, str]:
    """One email waiting to go out: an invite's (sent by its event's own job) or an
    announcement's (sent by a send_deliveries batch job). Returns (user id, address)."""
    from deltacrown.notifications.service import NotificationService
    from deltacrown.teams.models import Team
    from deltacrown.teams.services import invite_user

    home, other = (db.session.get(Team, team_id) for team_id in add_teams(2, prefix))
    user = db.session.get(User, other.captain_id)
    if via_event:
        invite_user(db.session.get(User, home.captain_id), home, user.id)  # commits; the relay enqueues its job
    else:
        NotificationService().notify([user.id], "announcement", f"{prefix} news", "", None, f"crash:{prefix}")
    return user.id, user.email


def email_delivery(user_id):
    row = db.session.execute(select(Delivery.status, Delivery.attempts)
                             .where(Delivery.user_id == user_id, Delivery.channel == "email")).one()
    db.session.rollback()
    return tuple(row)


def test_worker_killed_mid_send_is_sent_once_by_the_retry_without_waiting_out_its_lease(digest_app, smtp_server,
                                                                                         worker_env, spawn, tmp_path):
    # The dead run's delivery lease lasts 240 s, longer than the 2 minutes a retry may take: the
    # retry of the same job takes it over (RQ re-runs a job only once it judged the earlier run dead).
    app = digest_app
    env = worker_env(**smtp_server.env())
    addresses = []
    for round_no in range(SEND_ROUNDS):
        via_event = bool(round_no % 2)
        with app.app_context():
            user_id, address = add_email_to_send(f"s{round_no}-{uuid.uuid4().hex[:4]}", via_event)
        addresses.append(address)
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", "delivery:before_send", f"worker-{round_no}")
        worker.wait_paused()
        worker.kill()
        with app.app_context():
            assert email_delivery(user_id) == ("pending", 1)  # claimed by the dead run, not sent
        assert address not in {r for m in smtp_server.messages for r in m.rcpt_tos}
        assert recover_abandoned_jobs(app) == 1  # the dead run's job, retried by RQ
        run_burst(app)
        with app.app_context():
            assert email_delivery(user_id) == ("sent", 2), (round_no, via_event)

    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert [received[a] for a in addresses] == [1] * SEND_ROUNDS
    record_figures("crash_send", rounds=SEND_ROUNDS, killed=SEND_ROUNDS, sent_once=SEND_ROUNDS,
                   via_event_job=SEND_ROUNDS // 2)


def test_worker_killed_mid_gathered_send_sends_each_once_on_the_retry(digest_app, smtp_server, worker_env, spawn,
                                                                     tmp_path):
    # Two invites' events taken by one event job, with a third event (in-app only) behind them:
    # their emails are gathered for one send_ready_deliveries job, killed after it claimed the
    # first. Its retry sends the ids that run took (kept under its job id), the claimed one
    # included, each once.
    from deltacrown.outbox.services import emit

    app = digest_app
    env = worker_env(**smtp_server.env())
    with app.app_context():
        first, first_address = add_email_to_send(f"g1-{uuid.uuid4().hex[:4]}", via_event=True)
        second, second_address = add_email_to_send(f"g2-{uuid.uuid4().hex[:4]}", via_event=True)
        team_id = add_teams(1, f"g3-{uuid.uuid4().hex[:4]}")[0]
        emit("roster_changed", team_id=team_id, user_id=first, action="added", actor_id=None)
        db.session.commit()
    worker = PausedWorker(spawn, env, tmp_path / "pause-gathered", "delivery:before_send", "worker-gathered")
    worker.wait_paused()
    worker.kill()
    with app.app_context():
        assert (email_delivery(first), email_delivery(second)) == (("pending", 1), ("pending", 0))
    assert smtp_server.messages == []
    assert recover_abandoned_jobs(app) == 1  # the one gathered job, retried by RQ
    run_burst(app)
    with app.app_context():
        assert (email_delivery(first), email_delivery(second)) == (("sent", 2), ("sent", 1))
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert (received[first_address], received[second_address]) == (1, 1)
