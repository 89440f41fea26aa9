"""`flask seed-demo`: a small living world for a new user to look at.

An admin and eight players with known passwords, four teams with members, a
tournament under way (registrations, two completed matches and one to come),
a pending invite and a few notifications. Safe to run again: users, teams and
the tournament are looked up by name, notifications by their dedup key, so a
second run adds nothing. Rows are written directly (no outbox events): this is
a starting state, not a sequence of things that happened.
"""
from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from ..accounts.models import User
from ..accounts.services import create_user
from ..extensions import db
from ..notifications.models import Notification
from ..teams.models import Team, TeamInvite, TeamMembership
from ..timeutil import utcnow
from ..tournaments.models import Match, Registration, Tournament

# (username, password, is_admin, timezone). Demo only: these passwords are public.
DEMO_ACCOUNTS = (
    ("admin", "admin-demo-pass", True, "UTC"),
    ("alice", "alice-demo-pass", False, "Europe/Berlin"),
    ("bob", "bob-demo-pass", False, "Europe/London"),
    ("carol", "carol-demo-pass", False, "America/New_York"),
    ("dave", "dave-demo-pass", False, "UTC"),
    ("erin", "erin-demo-pass", False, "Asia/Tokyo"),
    ("frank", "frank-demo-pass", False, "UTC"),
    ("grace", "grace-demo-pass", False, "Australia/Sydney"),
    ("heidi", "heidi-demo-pass", False, "UTC"),
)

# (name, tag, captain, members)
DEMO_TEAMS = (
    ("Crimson Hawks", "HAWK", "alice", ("bob",)),
    ("Azure Wolves", "WOLF", "carol", ("dave",)),
    ("Golden Foxes", "FOX", "erin", ("frank",)),
    ("Silver Owls", "OWL", "grace", ()),
)
DEMO_TOURNAMENT = "DeltaCrown Demo Cup"


def demo_logins() -> list[tuple[str, str, bool]]:
    return [(name, password, admin) for name, password, admin, _ in DEMO_ACCOUNTS]


def _user(username, password, admin, timezone, created):
    user = db.session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        user, _token, _ = create_user(username, f"{username}@example.com", password=password,
                                      is_admin=admin, timezone=timezone)
        created["users"] += 1
    return user


def _team(name, tag, captain, members, created):
    team = db.session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name, tag=tag, captain_id=captain.id, points=0, wins=0, losses=0)
        db.session.add(team)
        db.session.flush()
        created["teams"] += 1
    have = set(db.session.scalars(select(TeamMembership.user_id).where(TeamMembership.team_id == team.id)))
    for user, role in [(captain, "captain")] + [(m, "member") for m in members]:
        if user.id not in have:
            db.session.add(TeamMembership(team_id=team.id, user_id=user.id, role=role))
    return team


def _notify(user, type_, title, body, url, key, read, created, subject_id=None):
    exists = db.session.scalar(select(Notification.id).where(Notification.user_id == user.id,
                                                             Notification.dedup_key == key))
    if exists is None:
        db.session.add(Notification(user_id=user.id, type=type_, title=title, body=body, url=url,
                                    is_read=read, read_at=utcnow() if read else None, dedup_key=key,
                                    seen_at=utcnow() if read else None,
                                    subject_id=subject_id))
        created["notifications"] += 1


def seed_demo() -> dict:
    """Create the demo world (whatever of it is missing). Returns counts of new rows."""
    created = {"users": 0, "teams": 0, "tournaments": 0, "matches": 0, "notifications": 0}
    users = {name: _user(name, pw, admin, tz, created) for name, pw, admin, tz in DEMO_ACCOUNTS}
    teams = {name: _team(name, tag, users[cap], [users[m] for m in members], created)
             for name, tag, cap, members in DEMO_TEAMS}
    hawks, wolves, foxes, owls = (teams[t[0]] for t in DEMO_TEAMS)
    now = utcnow().replace(microsecond=0)

    cup = db.session.scalar(select(Tournament).where(Tournament.name == DEMO_TOURNAMENT))
    if cup is None:
        cup = Tournament(name=DEMO_TOURNAMENT, status="ongoing", starts_at=now - timedelta(days=1))
        db.session.add(cup)
        db.session.flush()
        created["tournaments"] += 1
        for team in (hawks, wolves, foxes, owls):
            db.session.add(Registration(tournament_id=cup.id, team_id=team.id))
        # Two semifinals played, the final still to come.
        results = ((hawks, wolves, 2, 1), (foxes, owls, 0, 2))
        for i, (a, b, score_a, score_b) in enumerate(results):
            winner, loser = (a, b) if score_a > score_b else (b, a)
            db.session.add(Match(tournament_id=cup.id, team_a_id=a.id, team_b_id=b.id,
                                 scheduled_at=now - timedelta(hours=20 - i), status="completed",
                                 score_a=score_a, score_b=score_b, winner_id=winner.id,
                                 completed_at=now - timedelta(hours=19 - i)))
            winner.wins, winner.points = winner.wins + 1, winner.points + 3
            loser.losses += 1
        db.session.add(Match(tournament_id=cup.id, team_a_id=hawks.id, team_b_id=owls.id,
                             scheduled_at=now + timedelta(days=1), status="scheduled"))
        created["matches"] += 3
        for rank, team in enumerate((hawks, owls, wolves, foxes), start=1):
            team.rank = rank

    # A pending invite: the Silver Owls want heidi.
    invite_id = db.session.scalar(select(TeamInvite.id).where(TeamInvite.team_id == owls.id,
                                                              TeamInvite.user_id == users["heidi"].id))
    if invite_id is None:
        invite = TeamInvite(team_id=owls.id, user_id=users["heidi"].id, invited_by_id=users["grace"].id,
                            status="pending")
        db.session.add(invite)
        db.session.flush()
        invite_id = invite.id

    for name, *_ in DEMO_ACCOUNTS:
        _notify(users[name], "announcement", "Welcome to DeltaCrown",
                "This is a demo world: look around, change your notification preferences.",
                "/", "demo:welcome", True, created)
    for team in (hawks, wolves, foxes, owls):
        for membership in team.memberships:
            user = membership.user
            _notify(user, "tournament_registered", f"{team.name} entered {DEMO_TOURNAMENT}",
                    "", f"/tournaments/{cup.id}", f"demo:registered:{cup.id}", False, created)
    for team, text in ((hawks, "Crimson Hawks beat Azure Wolves 2-1"), (wolves, "Crimson Hawks beat Azure Wolves 2-1"),
                       (foxes, "Silver Owls beat Golden Foxes 2-0"), (owls, "Silver Owls beat Golden Foxes 2-0")):
        for membership in team.memberships:
            _notify(membership.user, "match_result", text, f"{DEMO_TOURNAMENT}, semifinal.", f"/tournaments/{cup.id}",
                    f"demo:result:{cup.id}:{team.id}", False, created)
    for team in (hawks, owls):
        for membership in team.memberships:
            _notify(membership.user, "match_scheduled", "Final: Crimson Hawks vs Silver Owls",
                    "The final of the demo cup is tomorrow.", f"/tournaments/{cup.id}", f"demo:final:{cup.id}", False,
                    created)
    _notify(users["heidi"], "invite_sent", "Silver Owls invited you to join", "grace invited you.", f"/invites/{invite_id}",
            "demo:invite:owls", False, created, subject_id=invite_id)  # answerable: Accept / Decline
    db.session.commit()
    return created


@click.command("seed-demo")
@with_appcontext
def seed_demo_command():
    """Create a demo world (users, teams, a tournament, notifications); safe to rerun."""
    created = seed_demo()
    summary = ", ".join(f"{n} {k}" for k, n in created.items())
    click.echo(f"Demo world ready (new: {summary}).")
    click.echo("Demo logins (username / password):")
    for name, password, admin in demo_logins():
        click.echo(f"  {name:<8} {password}{'   (admin)' if admin else ''}")


def init_app(app):
    app.cli.add_command(seed_demo_command)
