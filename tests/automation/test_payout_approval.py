"""Large payouts wait for a second admin (issue 19): held at wrap-up, approved by another admin
than the one who completed the tournament (four eyes), paid once; rejected with a reason the
captain is told; 404 / 403 / 409 / 422; the distribute-payouts job and command never pay a
held payout; the config's errors. Driven through the JSON API and real RQ jobs, on SQLite
and PostgreSQL. (Racing approvals and a SIGKILL mid-approval: test_payout_approval_race.py.)"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from deltacrown.config import ConfigError, load_config
from deltacrown.dedup import DedupKey
from deltacrown.economy import jobs
from deltacrown.economy.approvals import decision_dedup_key
from deltacrown.economy.models import CoinTransaction, Payout
from deltacrown.economy.services import balance
from deltacrown.extensions import db
from deltacrown.models import Notification
from deltacrown.ops.overview import payout_dedup_check
from deltacrown.queue import fetch_job
from tests.api.helpers import ApiDriver, in_days

from .money_factories import events


@pytest.fixture
def app_config():
    return {"PAYOUT_APPROVAL_THRESHOLD": 600}


@pytest.fixture
def api(app, client, users):
    return ApiDriver(app, client, users)


@pytest.fixture
def cup(api, users, run_jobs):
    """Admins alice and bob; three teams; alice completes a cup with them 1st, 2nd, 3rd and
    the wrap-up runs: 1000 (>= 600) is held, 500 and 250 are paid."""
    for name, admin in (("alice", True), ("bob", True), ("gold", False), ("silver", False), ("bronze", False),
                        ("fan", False)):
        users.create(name, admin=admin)
    teams = [api.team(f"Team {name}", name, ["fan"] if name == "gold" else [], who="alice")
             for name in ("gold", "silver", "bronze")]
    tid = api.post("/tournaments", "alice", {"name": "Autumn Cup", "starts_at": in_days(1)}, expect=201).json["id"]
    for team in teams:
        api.post(f"/tournaments/{tid}/registrations", "alice", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{tid}/bracket-ready", "alice", expect=200)
    api.post(f"/tournaments/{tid}/complete", "alice", {"placements": teams}, expect=200)
    run_jobs()
    return {"tournament_id": tid, "teams": teams}


def _coins(app, username, users) -> int:
    with app.app_context():
        return balance(users.ids[username])


def _notes(api, type_name):
    return api.rows(Notification, Notification.type == type_name)


def _held(api) -> dict:
    listed = api.get("/payouts?status=pending_approval", "bob", expect=200).json
    assert len(listed["items"]) == 1 and listed["next_cursor"] is None
    return listed["items"][0]


def test_threshold_600_pays_500_and_250_at_once_and_holds_1000_until_another_admin_approves(
        app, api, users, auth, cup, run_jobs):
    tid = cup["tournament_id"]
    # At once: 500 and 250. Held: 1000, with no coins yet.
    assert [_coins(app, n, users) for n in ("gold", "silver", "bronze")] == [0, 500, 250]
    held = _held(api)
    assert {k: held[k] for k in ("tournament_id", "team_id", "place", "amount", "status", "completed_by",
                                 "decided_by", "decided_at", "reason", "self_approved", "transaction_id",
                                 "user_id", "threshold")} == {
        "tournament_id": tid, "team_id": cup["teams"][0], "place": 1, "amount": 1000, "status": "pending_approval",
        "completed_by": users.ids["alice"], "decided_by": None, "decided_at": None, "reason": None,
        "self_approved": False, "transaction_id": None, "user_id": users.ids["gold"], "threshold": 600}
    # The captain hears it is waiting (not payout_received); the others were paid.
    waiting = _notes(api, "payout_awaiting_approval")
    assert [(n.user_id, n.title) for n in waiting] == [(users.ids["gold"], "Payout of 1000 coins awaiting approval")]
    assert "Autumn Cup" in waiting[0].body and waiting[0].url == f"/tournaments/{tid}"
    assert sorted(n.user_id for n in _notes(api, "payout_received")) == sorted(
        [users.ids["silver"], users.ids["bronze"]])
    # The achievements are awarded as usual, the held place's too.
    with app.app_context():
        assert len(events("achievement_earned")) == 3

    # The tournament page says so, to the captain.
    assert auth.login("gold").status_code == 302
    page = " ".join(api.client.get(f"/tournaments/{tid}").get_data(as_text=True).split())
    assert "1000 coins, awaiting an admin's approval" in page and "500 coins" in page
    auth.logout()

    # Four eyes: alice completed the tournament, so she may not approve its payouts.
    refused = api.post(f"/payouts/{held['id']}/approve", "alice", expect=403).json["error"]
    assert refused["code"] == "forbidden"
    assert "Four-eyes" in refused["message"] and "another admin" in refused["message"]
    assert "PAYOUT_APPROVAL_ALLOW_SELF" in refused["message"]
    assert _coins(app, "gold", users) == 0 and _held(api)["status"] == "pending_approval"
    # A player is no admin at all.
    assert api.post(f"/payouts/{held['id']}/approve", "gold", expect=403).json["error"]["code"] == "forbidden"

    paid = api.post(f"/payouts/{held['id']}/approve", "bob", expect=200).json
    assert paid["status"] == "paid" and paid["decided_by"] == users.ids["bob"] and paid["decided_at"]
    assert paid["transaction_id"] and paid["self_approved"] is False and paid["reason"] is None
    assert _coins(app, "gold", users) == 1000
    # Once: a second approval, and a rejection after it, are 409 and change nothing.
    again = api.post(f"/payouts/{held['id']}/approve", "bob", expect=409).json["error"]
    assert "already approved and paid by bob" in again["message"]
    api.post(f"/payouts/{held['id']}/reject", "bob", {"reason": "too late"}, expect=409)
    assert _coins(app, "gold", users) == 1000

    run_jobs()
    received = [n for n in _notes(api, "payout_received") if n.user_id == users.ids["gold"]]
    assert [n.title for n in received] == ["You received 1000 coins"]
    assert api.get("/payouts?status=pending_approval", "bob", expect=200).json["items"] == []
    assert [p["id"] for p in api.get("/payouts?status=paid", "bob", expect=200).json["items"]] == [held["id"]]

    with app.app_context():
        coin = db.session.get(CoinTransaction, paid["transaction_id"])
        meta = dict(coin.meta)
        assert (coin.user_id, coin.amount, coin.transaction_type, coin.dedup_key) == (
            users.ids["gold"], 1000, "tournament_payout", decision_dedup_key(held["id"]))
        assert {k: meta[k] for k in ("tournament_id", "place", "team_id", "payout_id", "approved_by",
                                     "completed_by", "self_approved")} == {
            "tournament_id": tid, "place": 1, "team_id": cup["teams"][0], "payout_id": held["id"],
            "approved_by": users.ids["bob"], "completed_by": users.ids["alice"], "self_approved": False}
        # The ops duplicate check covers approved payouts (their key credits one user once).
        check = payout_dedup_check()
        assert check.ok and check.keys_checked == 2  # the tournament's key and the approval's


def test_distribute_payouts_job_and_command_never_bypass_approval(app, api, users, cup, run_jobs, runner):
    tid = cup["tournament_id"]
    held = _held(api)
    with app.app_context():
        job = jobs.distribute_payouts.enqueue(tid)
    run_jobs()
    with app.app_context():
        result = fetch_job(job.id).return_value()
    assert result["status"] == "already_distributed"
    assert [(p["place"], p["status"], p["payout_id"]) for p in result["payouts"]] == [
        (1, "pending_approval", held["id"]), (2, "paid", None), (3, "paid", None)]
    out = runner.invoke(args=["distribute-payouts", str(tid)])
    assert out.exit_code == 0, out.output
    assert f"1000 coins held for approval (payout {held['id']}" in out.output
    api.post(f"/payouts/{held['id']}/reject", "bob", {"reason": "checked: no"}, expect=200)
    out = runner.invoke(args=["distribute-payouts", str(tid)])
    assert f"1000 coins held, then rejected (payout {held['id']})" in out.output
    assert _coins(app, "gold", users) == 0
    # The jobs API ("run now" for distribute-payouts) takes the same path.
    api.post("/jobs/distribute-payouts/run", "bob", {"tournament_id": tid}, expect=202)
    run_jobs()
    assert _coins(app, "gold", users) == 0
    assert api.get("/payouts?status=rejected", "bob", expect=200).json["items"][0]["id"] == held["id"]


def test_a_fresh_tournament_paid_by_the_command_holds_the_large_payout(app, users, runner, run_jobs):
    from .money_factories import add_teams, add_tournament

    with app.app_context():
        teams = add_teams(3)
        tid = add_tournament(status="completed", placements=teams)
    out = runner.invoke(args=["distribute-payouts", str(tid)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == f"Tournament {tid}: paid 2 placed team(s); 1 payout(s) held for a second admin's approval."
    assert "1000 coins held for approval" in lines[1] and "500 coins to captain" in lines[2]
    with app.app_context():
        assert sorted(c.amount for c in db.session.scalars(select(CoinTransaction))) == [250, 500]
        [held] = db.session.scalars(select(Payout)).all()
        assert (held.amount, held.status, held.completed_by_id) == (1000, "pending_approval", None)


def test_reject_tells_the_captain_the_reason_and_pays_nothing(app, api, users, auth, cup, run_jobs):
    held = _held(api)
    for body, field in (({}, "reason"), ({"reason": "   "}, "reason"), ({"reason": "x" * 501}, "reason"),
                        ({"reason": 7}, "reason")):
        response = api.post(f"/payouts/{held['id']}/reject", "bob", body, expect=422).json["error"]
        assert field in response["fields"], response
    assert _held(api)["status"] == "pending_approval"

    # Any admin may reject (alice completed it: stopping money needs no second person).
    rejected = api.post(f"/payouts/{held['id']}/reject", "alice",
                        {"reason": "  <b>Match fixing</b> under review  "}, expect=200).json
    assert (rejected["status"], rejected["reason"], rejected["decided_by"], rejected["transaction_id"]) == (
        "rejected", "<b>Match fixing</b> under review", users.ids["alice"], None)
    assert api.post(f"/payouts/{held['id']}/approve", "bob", expect=409).json["error"]["code"] == "conflict"
    api.post(f"/payouts/{held['id']}/reject", "bob", {"reason": "again"}, expect=409)
    run_jobs()
    assert _coins(app, "gold", users) == 0
    [note] = _notes(api, "payout_rejected")
    assert note.user_id == users.ids["gold"] and note.title == "Payout of 1000 coins rejected"
    assert "Reason: <b>Match fixing</b> under review" in note.body
    assert auth.login("gold").status_code == 302  # the page shows it, as text
    page = " ".join(api.client.get(f"/tournaments/{cup['tournament_id']}").get_data(as_text=True).split())
    assert "1000 coins, rejected: &lt;b&gt;Match fixing&lt;/b&gt; under review" in page
    assert [p["id"] for p in api.get("/payouts?status=rejected", "bob", expect=200).json["items"]] == [held["id"]]
    with app.app_context():
        assert db.session.scalar(select(DedupKey.task).where(DedupKey.key == decision_dedup_key(held["id"]))) == \
            "decide_payout"


@pytest.mark.parametrize("app_config", [{"PAYOUT_APPROVAL_THRESHOLD": 600, "PAYOUT_APPROVAL_ALLOW_SELF": True}])
def test_allow_self_lets_the_only_admin_approve_and_the_audit_says_so(app, api, users, cup):
    held = _held(api)
    paid = api.post(f"/payouts/{held['id']}/approve", "alice", expect=200).json
    assert paid["status"] == "paid" and paid["self_approved"] is True and paid["decided_by"] == users.ids["alice"]
    with app.app_context():
        assert db.session.get(CoinTransaction, paid["transaction_id"]).meta["self_approved"] is True
    assert _coins(app, "gold", users) == 1000


def test_unknown_payouts_bad_queries_and_callers(api, users, cup):
    held = _held(api)
    for path in ("/payouts/999999/approve", f"/payouts/{2**31 - 1}/approve"):
        assert api.post(path, "bob", expect=404).json["error"]["code"] == "not_found"
    assert api.post("/payouts/999999/reject", "bob", {"reason": "no"}, expect=404).status_code == 404
    assert api.post(f"/payouts/{2**40}/approve", "bob").status_code == 404
    bad = api.get("/payouts?status=held", "bob", expect=422).json["error"]
    assert "status" in bad["fields"]
    assert api.get("/payouts", "gold", expect=403).status_code == 403
    assert api.client.get("/api/v1/payouts").status_code == 401
    assert api.post(f"/payouts/{held['id']}/reject", "gold", {"reason": "mine"}, expect=403)
    everything = api.get("/payouts?limit=1", "bob", expect=200).json
    assert [p["id"] for p in everything["items"]] == [held["id"]] and everything["next_cursor"] is None


def test_list_is_newest_first_and_cursor_paged(app, api, users, cup, run_jobs):
    from .money_factories import add_teams, add_tournament
    from deltacrown.economy.payouts import distribute_tournament_payouts

    with app.app_context():
        for _ in range(2):
            distribute_tournament_payouts(add_tournament(status="completed", placements=add_teams(1)))
        ids = sorted(db.session.scalars(select(Payout.id)), reverse=True)
    assert len(ids) == 3
    first = api.get("/payouts?status=pending_approval&limit=2", "bob", expect=200).json
    assert [p["id"] for p in first["items"]] == ids[:2] and first["next_cursor"]
    rest = api.get(f"/payouts?status=pending_approval&limit=2&cursor={first['next_cursor']}", "bob",
                   expect=200).json
    assert [p["id"] for p in rest["items"]] == ids[2:] and rest["next_cursor"] is None


@pytest.mark.parametrize("app_config", [{}])
def test_threshold_unset_pays_everything_at_once(app, api, users, cup):
    assert [_coins(app, n, users) for n in ("gold", "silver", "bronze")] == [1000, 500, 250]
    assert api.get("/payouts", "bob", expect=200).json == {"items": [], "next_cursor": None}


def test_config_values_and_their_errors():
    assert load_config({})["PAYOUT_APPROVAL_THRESHOLD"] is None
    assert load_config({"PAYOUT_APPROVAL_THRESHOLD": ""})["PAYOUT_APPROVAL_THRESHOLD"] is None
    assert load_config({"PAYOUT_APPROVAL_THRESHOLD": " 600 "})["PAYOUT_APPROVAL_THRESHOLD"] == 600
    assert load_config({})["PAYOUT_APPROVAL_ALLOW_SELF"] is False
    assert load_config({"PAYOUT_APPROVAL_ALLOW_SELF": "true"})["PAYOUT_APPROVAL_ALLOW_SELF"] is True
    with pytest.raises(ConfigError, match=r"^PAYOUT_APPROVAL_THRESHOLD: expected a whole number of coins.*'600c'"):
        load_config({"PAYOUT_APPROVAL_THRESHOLD": "600c"})
    with pytest.raises(ConfigError, match=r"^PAYOUT_APPROVAL_THRESHOLD: must be at least 1 coin, got 0"):
        load_config({"PAYOUT_APPROVAL_THRESHOLD": "0"})
    with pytest.raises(ConfigError, match=r"^PAYOUT_APPROVAL_ALLOW_SELF: expected true or false"):
        load_config({"PAYOUT_APPROVAL_ALLOW_SELF": "sometimes"})
