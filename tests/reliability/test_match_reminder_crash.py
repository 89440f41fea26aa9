"""Crash: a worker SIGKILLed while it sends a match reminder, before and after its commit.

A real worker (worker.py's main) stops at a checkpoint in the reminder's send
(deltacrown/signals.py), is SIGKILLed with its work horse, and RQ's cleanup retries
the job (recover_abandoned_jobs, as in test_crash.py). Whatever the moment, every
member gets the reminder once: in-app once, one email delivery each, sent."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from deltacrown.extensions import db
from deltacrown.models import Delivery, Match, MatchReminder, Notification, TeamMembership
from deltacrown.notifications.jobs import send_match_reminder
from deltacrown.queue import fetch_job, run_burst
from deltacrown.timeutil import utcnow
from tests.automation.money_factories import add_teams, add_tournament

from .conftest import PausedWorker, env_int, recover_abandoned_jobs

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

ROUNDS = env_int("RELIABILITY_REMINDER_ROUNDS", 2)


def due_match() -> tuple[int, list[int]]:
    """A match in 30 minutes whose reminder is due now; its two teams' captains are members."""
    teams = add_teams(2)
    cup = add_tournament(team_ids=teams)
    now = utcnow()
    match = Match(tournament_id=cup, team_a_id=teams[0], team_b_id=teams[1], scheduled_at=now + timedelta(minutes=30),
                  status="scheduled")
    db.session.add(match)
    db.session.flush()
    db.session.add(MatchReminder(match_id=match.id, match_at=match.scheduled_at, due_at=now - timedelta(seconds=1),
                                 status="pending", updated_at=now))
    captains = [match.team_a.captain_id, match.team_b.captain_id]
    db.session.execute(insert(TeamMembership.__table__), [
        {"team_id": team, "user_id": user, "role": "captain", "joined_at": now - timedelta(days=1)}
        for team, user in zip(teams, captains)])
    db.session.commit()
    return match.id, captains


def reminded(match_id):
    notes = db.session.scalars(select(Notification.user_id).where(
        Notification.type == "match_reminder", Notification.url.like(f"%#match-{match_id}"))).all()
    mails = db.session.execute(select(Delivery.target, Delivery.status).where(
        Delivery.dedup_key.like(f"match_reminder:{match_id}:%"), Delivery.channel == "email")).all()
    status = db.session.scalar(select(MatchReminder.status).where(MatchReminder.match_id == match_id))
    db.session.rollback()
    return sorted(notes), sorted(mails), status


@pytest.mark.parametrize("point", ["reminder:after_claim", "reminder:after_commit"])
def test_worker_killed_while_sending_a_reminder_sends_it_once(rapp, worker_env, spawn, tmp_path, point):
    env = worker_env()
    for round_no in range(ROUNDS):
        with rapp.app_context():
            match_id, captains = due_match()
            job_id = send_match_reminder.enqueue(match_id).id
        worker = PausedWorker(spawn, env, tmp_path / f"pause-{round_no}", point, f"worker-{round_no}")
        worker.wait_paused()
        worker.kill()
        with rapp.app_context():
            notes, mails, status = reminded(match_id)
            if point == "reminder:after_claim":  # nothing of the killed transaction survives
                assert (notes, mails, status) == ([], [], "pending")
            else:  # committed, but its sends were never enqueued
                assert status == "sent" and len(notes) == 2 and {s for _, s in mails} == {"pending"}
        assert fetch_job(job_id, rapp).get_status() == "started"
        assert recover_abandoned_jobs(rapp) == 1
        run_burst(rapp)
        with rapp.app_context():
            notes, mails, status = reminded(match_id)
            assert status == "sent"
            assert notes == sorted(captains)
            assert len(mails) == 2 and {s for _, s in mails} == {"sent"}, mails
            assert db.session.scalar(select(func.count()).select_from(Notification).where(
                Notification.type == "match_reminder")) == 2 * (round_no + 1)
            db.session.rollback()
