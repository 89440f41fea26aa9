"""Authorization matrix, generated from the served OpenAPI document.

Every operation in /api/v1/openapi.json is called as four callers, each with a valid
body so that only *who* decides the answer:

- anonymous: no token (401 everywhere: the whole API needs a Bearer token);
- other: a player who owns nothing involved (eve);
- owner: the player the API.md "who" column names (captain, invited user, the member,
  "that user"); None where an operation has no owner besides admins (skipped);
- admin.

A new endpoint without a row in EXPECTATIONS fails `test_every_operation_has_expectations`.
State-changing calls that are expected to succeed get a fresh resource each (so the
owner's success does not turn the admin's into a 409).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import pytest
from sqlalchemy import select

from deltacrown.accounts.services import create_user
from deltacrown.economy.models import Payout
from deltacrown.extensions import db
from deltacrown.notifications import suppression
from deltacrown.notifications.models import Notification
from deltacrown.notifications.service import NotificationService
from tests.api.helpers import ApiDriver, in_days

ROLES = ("anonymous", "other", "owner", "admin")
_seq = itertools.count(1)


@pytest.fixture
def app_config():
    # A first place (1000 coins) waits for approval; the world's one admin may approve it.
    return {"PAYOUT_APPROVAL_THRESHOLD": 600, "PAYOUT_APPROVAL_ALLOW_SELF": True}


def _uniq(prefix: str) -> str:
    return f"{prefix}{next(_seq)}"


class World:
    """A small league built through the API: admin, Red (cap captain, ann member), outsider
    eve, invitee ivy; a notification for ann; a job run."""

    def __init__(self, app, client, users, run_jobs):
        self.app, self.users, self.run_jobs = app, users, run_jobs
        self.api = ApiDriver(app, client, users)
        for name, admin in (("admin", True), ("cap", False), ("ann", False), ("eve", False),
                            ("ivy", False), ("cyd", False)):
            users.create(name, admin=admin)
        self.red = self.api.team("Red", "cap", ["ann"])
        self.blue = self.api.team("Blue", "cyd")
        self.tournament = self.api.tournament("Open Cup")
        self.api.post("/announcements", "admin", {"title": "Welcome", "body": "hi",
                                                  "user_ids": [users.ids["ann"]]}, expect=202)
        run_jobs()
        items = self.api.get("/notifications", "ann", expect=200).json["items"]
        assert items, "the world needs a notification for ann"
        self.ann_notification = items[0]["id"]
        self.job_id = self.api.post("/jobs/recompute-rankings/run", "admin", {}, expect=202).json["job_id"]

    def id(self, name):
        return self.users.ids[name]

    # --- fresh resources (created by the admin through the API) ------------------
    def fresh_user(self) -> int:
        name = _uniq("fresh")
        with self.app.app_context():
            user, _, _ = create_user(name, f"{name}@example.com", password="fresh-password")
            return user.id

    def fresh_team(self, captain: str = "cyd") -> int:
        return self.api.post("/teams", "admin", {"name": _uniq("Team "), "captain_id": self.id(captain)},
                             expect=201).json["id"]

    def fresh_invite(self, invitee: str = "ivy") -> int:
        team = self.fresh_team()
        return self.api.post(f"/teams/{team}/invites", "admin", {"user_id": self.id(invitee)},
                             expect=201).json["id"]

    def fresh_member(self) -> tuple[int, str]:
        name = _uniq("member")
        self.users.create(name)
        self.api.post(f"/teams/{self.red}/members", "admin", {"user_id": self.id(name)}, expect=201)
        return self.id(name), name

    def fresh_sponsor(self) -> int:
        return self.api.post(f"/teams/{self.red}/sponsors", "admin", {"name": _uniq("Sponsor "),
                                                                      "expires_at": in_days(30)},
                             expect=201).json["id"]

    def fresh_tournament(self, registered=(), ongoing=False) -> int:
        tid = self.api.tournament(_uniq("Cup "))
        for team in registered:
            self.api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
        if ongoing:
            self.api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
        return tid

    def fresh_match(self) -> int:
        tid = self.fresh_tournament((self.red, self.blue), ongoing=True)
        return self.api.post(f"/tournaments/{tid}/matches", "admin",
                             {"team_a_id": self.red, "team_b_id": self.blue, "scheduled_at": in_days(1)},
                             expect=201).json["id"]

    def fresh_held_payout(self) -> int:
        """A completed tournament's first place (1000 coins), held for approval by the wrap-up."""
        tid = self.fresh_tournament((self.red, self.blue), ongoing=True)
        self.api.post(f"/tournaments/{tid}/complete", "admin", {"placements": [self.red, self.blue]}, expect=200)
        self.run_jobs()
        with self.app.app_context():
            return db.session.scalar(select(Payout.id).where(Payout.tournament_id == tid,
                                                             Payout.status == "pending_approval"))

    def fresh_suppression(self) -> int:
        with self.app.app_context():
            address = f"{_uniq('gone')}@example.com"
            suppression.suppress(address, "bounce", "smtp", "550 5.1.1")
            db.session.commit()
            return suppression.active_suppression(address).id


@dataclass
class Op:
    """Expected status per role (None: the role does not apply) and how to call it.

    `request(world, role)` returns (path, json body, who); `who` overrides the caller for
    the owner role when the owner is made fresh for the call."""
    expect: dict
    request: Callable
    owner: str | None = None


def _exp(anonymous=401, other=403, owner=None, admin=None):
    return {"anonymous": anonymous, "other": other, "owner": owner, "admin": admin}


def _member_delete(w: World, role):
    uid, name = w.fresh_member()
    return f"/teams/{w.red}/members/{uid}", None, name if role == "owner" else None


def _invite_action(w: World, role):
    """ivy's notification about a fresh invite (written as the worker would), to accept."""
    invite_id = w.fresh_invite("ivy")
    with w.app.app_context():
        NotificationService().notify_about("invite_sent", {"invite_id": invite_id}, f"authz:invite:{invite_id}",
                                           commit=True)
        nid = db.session.scalar(select(Notification.id).where(Notification.subject_id == invite_id))
    return f"/notifications/{nid}/actions/accept", None, None


EXPECTATIONS: dict[tuple[str, str], Op] = {
    # users
    ("POST", "/api/v1/users"): Op(_exp(admin=201), lambda w, r: (
        "/users", {"username": _uniq("new"), "email": f"{_uniq('new')}@example.com",
                   "password": "long-enough-pw"}, None)),
    ("GET", "/api/v1/me"): Op(_exp(other=200, owner=200, admin=200), lambda w, r: ("/me", None, None), "ann"),
    ("POST", "/api/v1/me/token"): Op(_exp(other=200, owner=200, admin=200),
                                     lambda w, r: ("/me/token", None, None), "ann"),
    # teams
    ("POST", "/api/v1/teams"): Op(_exp(admin=201), lambda w, r: (
        "/teams", {"name": _uniq("New "), "captain_id": w.id("cyd")}, None)),
    ("GET", "/api/v1/teams/{team_id}"): Op(_exp(other=200, owner=200, admin=200),
                                           lambda w, r: (f"/teams/{w.red}", None, None), "cap"),
    ("PUT", "/api/v1/teams/{team_id}/discord-webhook"): Op(_exp(owner=200, admin=200), lambda w, r: (
        f"/teams/{w.red}/discord-webhook", {"url": "https://discord.com/api/webhooks/1/abc"}, None), "cap"),
    ("POST", "/api/v1/teams/{team_id}/invites"): Op(_exp(owner=201, admin=201), lambda w, r: (
        f"/teams/{w.red}/invites", {"user_id": w.fresh_user()}, None), "cap"),
    ("POST", "/api/v1/invites/{invite_id}/accept"): Op(_exp(owner=200, admin=403), lambda w, r: (
        f"/invites/{w.fresh_invite()}/accept", None, None), "ivy"),
    ("POST", "/api/v1/invites/{invite_id}/decline"): Op(_exp(owner=200, admin=403), lambda w, r: (
        f"/invites/{w.fresh_invite()}/decline", None, None), "ivy"),
    ("POST", "/api/v1/teams/{team_id}/members"): Op(_exp(owner=201, admin=201), lambda w, r: (
        f"/teams/{w.red}/members", {"user_id": w.fresh_user()}, None), "cap"),
    ("DELETE", "/api/v1/teams/{team_id}/members/{user_id}"): Op(_exp(owner=204, admin=204), _member_delete),
    ("POST", "/api/v1/teams/{team_id}/sponsors"): Op(_exp(owner=201, admin=201), lambda w, r: (
        f"/teams/{w.red}/sponsors", {"name": _uniq("Acme "), "expires_at": in_days(30)}, None), "cap"),
    ("POST", "/api/v1/sponsors/{sponsor_id}/approve"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/sponsors/{w.fresh_sponsor()}/approve", None, None), "cap"),
    ("POST", "/api/v1/teams/{team_id}/promotions"): Op(_exp(owner=403, admin=201), lambda w, r: (
        f"/teams/{w.red}/promotions", {"title": "Promo", "starts_at": in_days(1), "ends_at": in_days(2)}, None),
        "cap"),
    ("POST", "/api/v1/teams/{team_id}/achievements"): Op(_exp(owner=403, admin=201), lambda w, r: (
        f"/teams/{w.red}/achievements", {"kind": "mvp"}, None), "cap"),
    # tournaments
    ("POST", "/api/v1/tournaments"): Op(_exp(admin=201), lambda w, r: (
        "/tournaments", {"name": _uniq("Cup "), "starts_at": in_days(3)}, None)),
    ("GET", "/api/v1/tournaments/{tournament_id}"): Op(_exp(other=200, owner=200, admin=200), lambda w, r: (
        f"/tournaments/{w.tournament}", None, None), "cap"),
    ("POST", "/api/v1/tournaments/{tournament_id}/registrations"): Op(_exp(owner=201, admin=201), lambda w, r: (
        f"/tournaments/{w.fresh_tournament()}/registrations", {"team_id": w.red}, None), "cap"),
    ("POST", "/api/v1/tournaments/{tournament_id}/bracket-ready"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/tournaments/{w.fresh_tournament((w.red, w.blue))}/bracket-ready", None, None), "cap"),
    ("POST", "/api/v1/tournaments/{tournament_id}/matches"): Op(_exp(owner=403, admin=201), lambda w, r: (
        f"/tournaments/{w.fresh_tournament((w.red, w.blue), ongoing=True)}/matches",
        {"team_a_id": w.red, "team_b_id": w.blue, "scheduled_at": in_days(1)}, None), "cap"),
    ("POST", "/api/v1/matches/{match_id}/result"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/matches/{w.fresh_match()}/result", {"score_a": 2, "score_b": 1}, None), "cap"),
    ("PATCH", "/api/v1/matches/{match_id}"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/matches/{w.fresh_match()}", {"scheduled_at": in_days(3)}, None), "cap"),
    ("POST", "/api/v1/tournaments/{tournament_id}/complete"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/tournaments/{w.fresh_tournament((w.red, w.blue), ongoing=True)}/complete",
        {"placements": [w.red, w.blue]}, None), "cap"),
    # coins
    ("GET", "/api/v1/users/{user_id}/coins"): Op(_exp(owner=200, admin=200), lambda w, r: (
        f"/users/{w.id('ann')}/coins", None, None), "ann"),
    # notifications and preferences: always the caller's own
    ("GET", "/api/v1/notifications"): Op(_exp(other=200, owner=200, admin=200),
                                         lambda w, r: ("/notifications", None, None), "ann"),
    ("GET", "/api/v1/notifications/unread-count"): Op(_exp(other=200, owner=200, admin=200),
                                                      lambda w, r: ("/notifications/unread-count", None, None), "ann"),
    # someone else's notification is as good as missing: 404, even for an admin
    ("POST", "/api/v1/notifications/{notification_id}/read"): Op(_exp(other=404, owner=200, admin=404), lambda w, r: (
        f"/notifications/{w.ann_notification}/read", None, None), "ann"),
    ("POST", "/api/v1/notifications/{notification_id}/actions/{action_name}"): Op(
        _exp(other=404, owner=200, admin=404), _invite_action, "ivy"),
    ("POST", "/api/v1/notifications/seen"): Op(_exp(other=200, owner=200, admin=200), lambda w, r: (
        "/notifications/seen", {"ids": [w.ann_notification]}, None), "ann"),
    ("POST", "/api/v1/notifications/{notification_id}/archive"): Op(
        _exp(other=404, owner=200, admin=404), lambda w, r: (f"/notifications/{w.ann_notification}/archive", None, None),
        "ann"),
    ("POST", "/api/v1/notifications/{notification_id}/unarchive"): Op(
        _exp(other=404, owner=200, admin=404),
        lambda w, r: (f"/notifications/{w.ann_notification}/unarchive", None, None), "ann"),
    ("POST", "/api/v1/notifications/{notification_id}/snooze"): Op(
        _exp(other=404, owner=200, admin=404),
        lambda w, r: (f"/notifications/{w.ann_notification}/snooze", {"until": in_days(1)}, None), "ann"),
    ("DELETE", "/api/v1/notifications/{notification_id}/snooze"): Op(
        _exp(other=404, owner=200, admin=404),
        lambda w, r: (f"/notifications/{w.ann_notification}/snooze", None, None), "ann"),
    ("POST", "/api/v1/notifications/read-all"): Op(_exp(other=200, owner=200, admin=200),
                                                   lambda w, r: ("/notifications/read-all", None, None), "ann"),
    ("GET", "/api/v1/preferences"): Op(_exp(other=200, owner=200, admin=200),
                                       lambda w, r: ("/preferences", None, None), "ann"),
    ("PUT", "/api/v1/preferences"): Op(_exp(other=200, owner=200, admin=200),
                                       lambda w, r: ("/preferences", {"enable_daily_digest": True}, None), "ann"),
    # mutes: always the caller's own; someone else's is as good as missing
    ("GET", "/api/v1/mutes"): Op(_exp(other=200, owner=200, admin=200), lambda w, r: ("/mutes", None, None), "ann"),
    ("POST", "/api/v1/mutes"): Op(_exp(other=201, owner=201, admin=201), lambda w, r: (
        "/mutes", {"team_id": w.red, "until": None}, None), "ann"),
    ("DELETE", "/api/v1/mutes/{mute_id}"): Op(_exp(other=404, owner=204, admin=404), lambda w, r: (
        f"/mutes/{w.api.post('/mutes', 'ann', {'tournament_id': w.tournament, 'until': None}, expect=201).json['id']}",
        None, None), "ann"),
    # payouts held for approval (admin; the one who completed may approve: PAYOUT_APPROVAL_ALLOW_SELF)
    ("GET", "/api/v1/payouts"): Op(_exp(owner=403, admin=200), lambda w, r: ("/payouts", None, None), "cap"),
    ("POST", "/api/v1/payouts/{payout_id}/approve"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/payouts/{w.fresh_held_payout()}/approve", None, None), "cap"),
    ("POST", "/api/v1/payouts/{payout_id}/reject"): Op(_exp(owner=403, admin=200), lambda w, r: (
        f"/payouts/{w.fresh_held_payout()}/reject", {"reason": "duplicate entry"}, None), "cap"),
    # email deliverability: the suppression list (admin); events need EMAIL_EVENTS_TOKEN, no user's token
    ("GET", "/api/v1/suppressions"): Op(_exp(admin=200), lambda w, r: ("/suppressions", None, None)),
    ("DELETE", "/api/v1/suppressions/{suppression_id}"): Op(_exp(admin=204), lambda w, r: (
        f"/suppressions/{w.fresh_suppression()}", None, None)),
    ("POST", "/api/v1/email-events"): Op(_exp(other=401, admin=401), lambda w, r: (
        "/email-events", {"type": "bounce", "email": "x@example.com", "permanent": True}, None)),
    # admin
    ("POST", "/api/v1/announcements"): Op(_exp(admin=202), lambda w, r: (
        "/announcements", {"title": "News", "body": "text", "user_ids": [w.id("ann")]}, None)),
    ("GET", "/api/v1/jobs"): Op(_exp(admin=200), lambda w, r: ("/jobs", None, None)),
    ("POST", "/api/v1/jobs/{name}/run"): Op(_exp(admin=202), lambda w, r: ("/jobs/recompute-rankings/run", {}, None)),
    ("GET", "/api/v1/jobs/runs/{job_id}"): Op(_exp(admin=200), lambda w, r: (f"/jobs/runs/{w.job_id}", None, None)),
}


def served_operations(client) -> set[tuple[str, str]]:
    doc = client.get("/api/v1/openapi.json").json
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_every_operation_has_expectations(client):
    served = served_operations(client)
    assert len(served) >= 30
    missing = sorted(served - EXPECTATIONS.keys())
    stale = sorted(EXPECTATIONS.keys() - served)
    assert not missing, f"operations without an authorization expectation: {missing}"
    assert not stale, f"expectations for operations the document no longer has: {stale}"


@pytest.mark.timeout(600)
def test_authorization_matrix(app, client, users, run_jobs):
    world = World(app, client, users, run_jobs)
    operations = sorted(served_operations(client))
    mismatches, calls = [], 0
    for method, template in operations:
        op = EXPECTATIONS[(method, template)]
        for role in ROLES:
            expected = op.expect[role]
            if expected is None:
                continue
            path, body, who = op.request(world, role)
            caller = {"anonymous": None, "other": "eve", "admin": "admin"}.get(role, who or op.owner)
            assert role == "anonymous" or caller, (method, template, role)
            response = world.api.call(method, path, caller, json=body)
            calls += 1
            if response.status_code != expected:
                mismatches.append(f"{method} {template} as {role} ({caller}): expected {expected}, "
                                  f"got {response.status_code} {response.get_data(as_text=True)[:160]}")
            elif response.status_code in (401, 403):
                assert response.json["error"]["code"] in ("unauthorized", "forbidden"), response.json
            if template == "/api/v1/me/token" and response.status_code == 200:
                world.users.tokens[caller] = response.json["api_token"]  # the old one stopped working
    assert not mismatches, "\n".join(mismatches)
    assert calls >= 4 * 32 - 20
