"""`flask seed-demo`: a living world, known logins, and a second run adds nothing."""
from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.models import (Match, Notification, Registration, Team, TeamInvite, TeamMembership,
                               Tournament, User)
from deltacrown.ops.demo import DEMO_ACCOUNTS, DEMO_TOURNAMENT

COUNTED = (User, Team, TeamMembership, TeamInvite, Tournament, Registration, Match, Notification)


def row_counts(app):
    with app.app_context():
        return {model.__name__: db.session.scalar(select(func.count()).select_from(model)) for model in COUNTED}


def test_seed_demo_builds_a_world_and_prints_the_logins(app, runner, client):
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    for username, password, *_ in DEMO_ACCOUNTS:
        assert f"{username:<8} {password}" in result.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "admin")).is_admin
        assert db.session.scalar(select(func.count()).select_from(User).where(User.is_admin.is_(False))) >= 5
        for team in db.session.scalars(select(Team)):
            assert {m.user_id for m in team.memberships} >= {team.captain_id}
        cup = db.session.scalar(select(Tournament).where(Tournament.name == DEMO_TOURNAMENT))
        assert len(cup.registrations) >= 2
        statuses = [m.status for m in cup.matches]
        assert "completed" in statuses and "scheduled" in statuses
        for match in cup.matches:
            if match.status == "completed":
                assert match.winner_id in (match.team_a_id, match.team_b_id)
        assert db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.is_read.is_(False))) > 0
    # the printed passwords work on the login page
    username, password, *_ = DEMO_ACCOUNTS[1]
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302
    assert f"Welcome, {username}".encode() in client.get("/").data


def test_seed_demo_twice_duplicates_nothing(app, runner):
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    first = row_counts(app)
    second_run = runner.invoke(args=["seed-demo"])
    assert second_run.exit_code == 0, second_run.output
    assert row_counts(app) == first
    assert "new: 0 users, 0 teams, 0 tournaments, 0 matches, 0 notifications" in second_run.output


def test_seed_demo_completes_a_partly_seeded_world(app, runner, users):
    # An existing user with a demo name is kept (not duplicated, password untouched).
    users.create("alice")
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User).where(User.username == "alice")) == 1
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    assert row_counts(app)["User"] == len(DEMO_ACCOUNTS)


def test_every_demo_notification_links_to_a_page_its_recipient_can_open(app, runner):
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    logins = {username: password for username, password, *_ in DEMO_ACCOUNTS}
    with app.app_context():
        links = db.session.execute(select(User.username, Notification.url).join(User, User.id == Notification.user_id)
                                   .distinct()).all()
    assert links and all(url for _, url in links)
    for username, url in links:
        client = app.test_client()
        assert client.post("/login", data={"username": username, "password": logins[username]}).status_code == 302
        assert client.get(url.split("#")[0]).status_code == 200, (username, url)
