"""Held payouts are decided exactly once: eight approvals at the same moment from two processes
(PostgreSQL), and an approval SIGKILLed between writing its coins and committing (SQLite and
PostgreSQL) — paid once after recovery.

Each racing process builds its own app against the same database and sends its requests
through the real API (Flask test client, one per thread, each with its own app context and
database session), all released by one barrier.
"""
from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from collections import Counter

import pytest
from sqlalchemy import select, text

from deltacrown.accounts.services import create_user
from deltacrown.economy.approvals import decision_dedup_key
from deltacrown.economy.models import CoinTransaction, Payout
from deltacrown.economy.payouts import distribute_tournament_payouts
from deltacrown.economy.services import balance
from deltacrown.extensions import db
from deltacrown.models import Tournament
from deltacrown.queue import get_redis
from tests.conftest import _reset_schema, make_test_app
from tests.support.pausing import pause_file
from tests.support.processes import wait_for

from .money_factories import add_teams, add_tournament, events

THRESHOLD = {"PAYOUT_APPROVAL_THRESHOLD": 600}
PROCESSES, THREADS = 2, 4
RACERS = PROCESSES * THREADS
ROUNDS = 6  # the last round races four approvals against four rejections


def _held_payouts(count: int, completed_by: int) -> list[int]:
    """`count` completed tournaments (completed by `completed_by`) paid with the threshold on:
    each holds its 1000-coin first place. Returns the held payouts' ids."""
    ids = []
    for _ in range(count):
        cup = add_tournament(status="completed", placements=add_teams(3))
        db.session.get(Tournament, cup).completed_by_id = completed_by
        db.session.commit()
        result = distribute_tournament_payouts(cup)
        [held] = [p for p in result["payouts"] if p["status"] == "pending_approval"]
        ids.append(held["payout_id"])
    return ids


def _admins() -> dict:
    tokens = {}
    for name in ("alice", "bob"):
        user, token, _ = create_user(name, f"{name}@example.com", password=f"{name}-password", is_admin=True)
        tokens[name] = (user.id, token)
    return tokens


# --- eight approvals at once, from two processes ----------------------------------

def _racer_process(database_url, redis_url, token, payout_ids, barrier, results):
    app = make_test_app(database_url, redis_url, **THRESHOLD)
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connect before the start line
        db.session.remove()

    def thread(index):
        client = app.test_client()
        for round_no, payout_id in enumerate(payout_ids):
            reject = round_no == len(payout_ids) - 1 and index % 2 == 1
            barrier.wait(timeout=120)
            try:
                if reject:
                    response = client.post(f"/api/v1/payouts/{payout_id}/reject", json={"reason": "racing"},
                                           headers={"Authorization": f"Bearer {token}"})
                else:
                    response = client.post(f"/api/v1/payouts/{payout_id}/approve",
                                           headers={"Authorization": f"Bearer {token}"})
                results.put((payout_id, "reject" if reject else "approve", response.status_code,
                             response.get_json()))
            except Exception as exc:  # reported to the test, which fails on it
                results.put((payout_id, "error", 0, repr(exc)))

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def pg_app(postgres_database, redis_url):
    app = make_test_app(postgres_database, redis_url, **THRESHOLD)
    _reset_schema(app)
    get_redis(app).flushdb()
    yield app, postgres_database
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgres
def test_eight_racing_approvals_from_two_processes_pay_each_payout_exactly_once(pg_app, redis_url):
    app, url = pg_app
    with app.app_context():
        admins = _admins()
        payout_ids = _held_payouts(ROUNDS, completed_by=admins["alice"][0])
        captains = {p.id: p.user_id for p in db.session.scalars(select(Payout))}

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    racers = [ctx.Process(target=_racer_process, args=(url, redis_url, admins["bob"][1], payout_ids, barrier, results))
              for _ in range(PROCESSES)]
    for racer in racers:
        racer.start()
    outcomes = []
    try:
        for _ in range(RACERS * ROUNDS):
            outcomes.append(results.get(timeout=120))
    except queue_module.Empty:
        pytest.fail(f"only {len(outcomes)} of {RACERS * ROUNDS} decisions reported back")
    finally:
        for racer in racers:
            racer.join(60)
            if racer.is_alive():
                racer.kill()

    assert not [o for o in outcomes if o[1] == "error" or o[2] not in (200, 409)], outcomes
    statuses = Counter((payout_id, status) for payout_id, _, status, _ in outcomes)
    for payout_id in payout_ids:
        assert statuses[(payout_id, 200)] == 1, statuses
        assert statuses[(payout_id, 409)] == RACERS - 1, statuses
    losers = [body["error"] for _, _, status, body in outcomes if status == 409]
    assert all(e["code"] == "conflict" and "already" in e["message"] for e in losers)

    winners = {payout_id: (action, body) for payout_id, action, status, body in outcomes if status == 200}
    with app.app_context():
        for payout_id in payout_ids:
            action, body = winners[payout_id]
            payout = db.session.get(Payout, payout_id)
            coins = db.session.scalars(select(CoinTransaction).where(
                CoinTransaction.dedup_key == decision_dedup_key(payout_id))).all()
            if action == "approve":
                assert payout.status == "paid" and body["status"] == "paid"
                assert [(c.user_id, c.amount, c.id) for c in coins] == [(captains[payout_id], 1000,
                                                                         payout.transaction_id)]
            else:
                assert payout.status == "rejected" and payout.reason == "racing" and coins == []
            assert balance(captains[payout_id]) == (1000 if action == "approve" else 0)
        approved = [p for p in payout_ids if winners[p][0] == "approve"]
        assert len(approved) >= ROUNDS - 1
        held_received = [e for e in events("payout_received") if e["amount"] == 1000]
        assert sorted(e["transaction_id"] for e in held_received) == sorted(
            db.session.get(Payout, p).transaction_id for p in approved)
        assert len(events("payout_rejected")) == ROUNDS - len(approved)


# --- SIGKILL in the middle of an approval -----------------------------------------

def _approve_in_child(database_url, redis_url, token, payout_id, pause_dir):
    """Child process: approve through the API, pausing after the coins are written (not committed)."""
    from tests.support.pausing import pause_at

    pause_at("payout_approval:after_coins", pause_dir)
    app = make_test_app(database_url, redis_url, **THRESHOLD)
    app.test_client().post(f"/api/v1/payouts/{payout_id}/approve", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("app_config", [THRESHOLD])
def test_an_approval_killed_before_commit_pays_nothing_and_the_next_approval_pays_once(
        app, client, database_url, redis_url, tmp_path):
    with app.app_context():
        admins = _admins()
        [payout_id] = _held_payouts(1, completed_by=admins["alice"][0])
        captain = db.session.get(Payout, payout_id).user_id
    bob = admins["bob"][1]

    child = multiprocessing.get_context("spawn").Process(
        target=_approve_in_child, args=(database_url, redis_url, bob, payout_id, str(tmp_path)))
    child.start()
    try:
        reached = pause_file("payout_approval:after_coins", "reached", tmp_path)

        def paused():
            assert child.is_alive(), "the approving process died before the pause point"
            return reached.exists()

        wait_for(paused, timeout=60, message="the approval to reach its pause point")
        with app.app_context():  # its coins are written but not committed: invisible
            assert db.session.scalar(select(db.func.count()).select_from(CoinTransaction).where(
                CoinTransaction.dedup_key == decision_dedup_key(payout_id))) == 0
            assert db.session.get(Payout, payout_id).status == "pending_approval"
            db.session.rollback()
    finally:
        child.kill()
        child.join(30)
    assert child.exitcode is not None and child.exitcode < 0  # killed, not finished

    # Recovery: nothing of the killed approval remains; approving again pays, once.
    with app.app_context():
        assert db.session.get(Payout, payout_id).status == "pending_approval"
        assert balance(captain) == 0
    headers = {"Authorization": f"Bearer {bob}"}
    paid = client.post(f"/api/v1/payouts/{payout_id}/approve", headers=headers)
    assert paid.status_code == 200, paid.get_data(as_text=True)
    assert paid.json["status"] == "paid"
    assert client.post(f"/api/v1/payouts/{payout_id}/approve", headers=headers).status_code == 409
    with app.app_context():
        coins = db.session.scalars(select(CoinTransaction).where(
            CoinTransaction.dedup_key == decision_dedup_key(payout_id))).all()
        assert [(c.user_id, c.amount) for c in coins] == [(captain, 1000)]
        assert balance(captain) == 1000
        assert [e["transaction_id"] for e in events("payout_received") if e["amount"] == 1000] == [coins[0].id]
