"""Invites, sponsors and promotions change state on time: services, jobs (real worker), CLI."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.outbox.models import OutboxEvent
from deltacrown.teams import jobs
from deltacrown.teams.lifecycle import clean_expired_invites, expire_sponsors, process_scheduled_promotions
from deltacrown.teams.models import Team, TeamInvite, TeamPromotion, TeamSponsor
from deltacrown.timeutil import utcnow


def make_team(app, users, name="alpha"):
    captain = users.create(f"{name}-captain")
    with app.app_context():
        team = Team(name=name, captain_id=captain)
        db.session.add(team)
        db.session.commit()
        return team.id, captain


def statuses(app, model):
    with app.app_context():
        return dict(db.session.execute(select(model.id, model.status).order_by(model.id)).all())


def test_invites_pending_over_seven_days_expire_once(app, users, count_queries):
    team_id, captain = make_team(app, users)
    invitees = [users.create(f"player{i}") for i in range(4)]
    now = utcnow()
    with app.app_context():
        rows = [TeamInvite(team_id=team_id, user_id=invitees[0], created_at=now - timedelta(days=8)),
                TeamInvite(team_id=team_id, user_id=invitees[1], created_at=now - timedelta(days=6, hours=23)),
                TeamInvite(team_id=team_id, user_id=invitees[2], created_at=now - timedelta(days=30),
                           status="accepted"),
                TeamInvite(team_id=team_id, user_id=invitees[3], created_at=now - timedelta(days=7, seconds=1))]
        db.session.add_all(rows)
        db.session.commit()
        ids = [r.id for r in rows]
    with app.app_context(), count_queries() as q:
        assert clean_expired_invites(now=now) == {"expired": 2}
    assert q.count <= 3  # one UPDATE (+ transaction bookkeeping) whatever the number of rows
    assert statuses(app, TeamInvite) == {ids[0]: "expired", ids[1]: "pending", ids[2]: "accepted",
                                         ids[3]: "expired"}
    with app.app_context():
        assert db.session.get(TeamInvite, ids[0]).responded_at is not None
        assert db.session.get(TeamInvite, ids[1]).responded_at is None
        assert clean_expired_invites(now=now) == {"expired": 0}


def test_sponsors_past_expiry_expire(app, users):
    team_id, _ = make_team(app, users)
    now = utcnow()
    with app.app_context():
        rows = [TeamSponsor(team_id=team_id, name="A", status="approved", expires_at=now - timedelta(minutes=1)),
                TeamSponsor(team_id=team_id, name="B", status="approved", expires_at=now + timedelta(days=1)),
                TeamSponsor(team_id=team_id, name="C", status="pending", expires_at=now - timedelta(days=1))]
        db.session.add_all(rows)
        db.session.commit()
        ids = [r.id for r in rows]
        assert expire_sponsors(now=now) == {"expired": 1}
        assert expire_sponsors(now=now) == {"expired": 0}
    assert statuses(app, TeamSponsor) == {ids[0]: "expired", ids[1]: "approved", ids[2]: "pending"}


def _promotions(app, team_id, now):
    h = timedelta(hours=1)
    with app.app_context():
        rows = [TeamPromotion(team_id=team_id, title="due", starts_at=now - h, ends_at=now + h),
                TeamPromotion(team_id=team_id, title="later", starts_at=now + h, ends_at=now + 2 * h),
                TeamPromotion(team_id=team_id, title="over", status="active", starts_at=now - 2 * h, ends_at=now - h),
                TeamPromotion(team_id=team_id, title="running", status="active", starts_at=now - h, ends_at=now + h),
                TeamPromotion(team_id=team_id, title="missed", starts_at=now - 3 * h, ends_at=now - 2 * h)]
        db.session.add_all(rows)
        db.session.commit()
        return [r.id for r in rows]


def test_promotions_start_with_event_and_end(app, users):
    team_id, _ = make_team(app, users)
    now = utcnow()
    ids = _promotions(app, team_id, now)
    with app.app_context():
        assert process_scheduled_promotions(now=now) == {"started": 1, "expired": 2}
        assert process_scheduled_promotions(now=now) == {"started": 0, "expired": 0}
        events = db.session.execute(select(OutboxEvent.type, OutboxEvent.payload)).all()
    assert [(t, p) for t, p in events] == [("promotion_started", {"promotion_id": ids[0]})]
    assert statuses(app, TeamPromotion) == {ids[0]: "active", ids[1]: "scheduled", ids[2]: "expired",
                                            ids[3]: "active", ids[4]: "expired"}


def test_jobs_run_on_a_real_worker(app, users, run_jobs):
    team_id, _ = make_team(app, users)
    invitee = users.create("late")
    now = utcnow()
    ids = _promotions(app, team_id, now)
    with app.app_context():
        db.session.add(TeamInvite(team_id=team_id, user_id=invitee, created_at=now - timedelta(days=9)))
        db.session.add(TeamSponsor(team_id=team_id, name="S", status="approved", expires_at=now - timedelta(days=1)))
        db.session.commit()
        queued = [jobs.clean_expired_invites.enqueue(), jobs.expire_sponsors.enqueue(),
                  jobs.process_promotions.enqueue()]
    run_jobs()
    with app.app_context():
        results = []
        for job in queued:
            job.refresh()
            assert job.get_status() == "finished", job.latest_result()
            results.append(job.return_value())
        assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 1
    assert results == [{"expired": 1}, {"expired": 1}, {"started": 1, "expired": 2}]
    assert statuses(app, TeamPromotion)[ids[0]] == "active"


def test_cli_commands(app, users, runner):
    team_id, _ = make_team(app, users)
    invitee = users.create("late")
    now = utcnow()
    _promotions(app, team_id, now)
    with app.app_context():
        db.session.add(TeamInvite(team_id=team_id, user_id=invitee, created_at=now - timedelta(days=9)))
        db.session.add(TeamSponsor(team_id=team_id, name="S", status="approved", expires_at=now - timedelta(days=1)))
        db.session.commit()
    result = runner.invoke(args=["clean-expired-invites"])
    assert result.exit_code == 0 and "Expired 1 invite(s)." in result.output
    result = runner.invoke(args=["process-sponsorships", "--sponsors-only"])
    assert result.exit_code == 0, result.output
    assert "Sponsors: 1 expired." in result.output and "Promotions" not in result.output
    result = runner.invoke(args=["process-sponsorships", "--promotions-only"])
    assert result.output.strip() == "Promotions: 1 started, 2 expired."
    result = runner.invoke(args=["process-sponsorships"])
    assert "Sponsors: 0 expired." in result.output and "Promotions: 0 started, 0 expired." in result.output
    result = runner.invoke(args=["process-sponsorships", "--sponsors-only", "--promotions-only"])
    assert result.exit_code != 0 and "exclude each other" in result.output


def test_cli_enqueue_puts_jobs_on_the_queue(app, runner, run_jobs):
    result = runner.invoke(args=["process-sponsorships", "--enqueue"])
    assert result.exit_code == 0, result.output
    assert "Enqueued expire_sponsors as job" in result.output
    assert "Enqueued process_promotions as job" in result.output
    result = runner.invoke(args=["clean-expired-invites", "--enqueue"])
    assert "Enqueued clean_expired_invites" in result.output
    with app.app_context():
        from deltacrown.queue import get_queue

        assert get_queue("scheduled").count == 3
    run_jobs()
    with app.app_context():
        assert get_queue("scheduled").count == 0


def test_cli_enqueue_without_redis_fails_with_one_line(database_url):
    from tests.conftest import make_test_app

    app = make_test_app(database_url, "redis://127.0.0.1:1/0")
    result = app.test_cli_runner().invoke(args=["clean-expired-invites", "--enqueue"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: could not enqueue") and result.output.count("\n") == 1
