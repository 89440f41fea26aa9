"""Eight processes pay the same tournaments at the same moment: exactly one set of payouts each.

PostgreSQL only (SQLite serialises writers with a file lock, so there is no race
to speak of). Each process builds its own app against the same database, waits
at a barrier, then calls the payout service; this repeats for ten tournaments.
"""
from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections import Counter

import pytest
from sqlalchemy import select, text

from deltacrown.dedup import DedupKey
from deltacrown.economy.models import CoinTransaction
from deltacrown.economy.payouts import distribute_tournament_payouts, payout_dedup_key
from deltacrown.extensions import db
from deltacrown.models import Team
from tests.conftest import _reset_schema, make_test_app

from .money_factories import add_teams, add_tournament, events

PROCESSES = 8
TOURNAMENTS = 10


def _racer(database_url, redis_url, tournament_ids, barrier, results):
    app = make_test_app(database_url, redis_url)
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connect before the start line
        db.session.rollback()
        for tournament_id in tournament_ids:
            barrier.wait(timeout=120)
            try:
                outcome = distribute_tournament_payouts(tournament_id)
                results.put((tournament_id, outcome["status"], outcome["payouts"]))
            except Exception as exc:  # reported to the test, which fails on it
                db.session.rollback()
                results.put((tournament_id, f"error: {exc!r}", None))


@pytest.fixture
def pg_app(postgres_database, redis_url):
    url = postgres_database
    app = make_test_app(url, redis_url)
    _reset_schema(app)
    yield app, url
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgres
def test_eight_processes_racing_pay_each_tournament_exactly_once(pg_app, redis_url):
    app, url = pg_app
    with app.app_context():
        cups = []
        for _ in range(TOURNAMENTS):
            teams = add_teams(3)
            cups.append(add_tournament(status="completed", placements=teams))

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    racers = [ctx.Process(target=_racer, args=(url, redis_url, cups, barrier, results)) for _ in range(PROCESSES)]
    for racer in racers:
        racer.start()
    outcomes = []
    try:
        for _ in range(PROCESSES * TOURNAMENTS):
            outcomes.append(results.get(timeout=120))
    except queue_module.Empty:
        pytest.fail(f"only {len(outcomes)} of {PROCESSES * TOURNAMENTS} payout attempts reported back")
    finally:
        for racer in racers:
            racer.join(60)
            if racer.is_alive():
                racer.kill()

    errors = [o for o in outcomes if o[1].startswith("error")]
    assert not errors, errors
    statuses = Counter((tournament_id, status) for tournament_id, status, _ in outcomes)
    for cup in cups:
        assert statuses[(cup, "distributed")] == 1, statuses
        assert statuses[(cup, "already_distributed")] == PROCESSES - 1, statuses
        paid = [payouts for tid, status, payouts in outcomes if tid == cup]
        assert all(p == paid[0] for p in paid)  # every loser reports the winner's payouts

    with app.app_context():
        for cup in cups:
            coins = db.session.scalars(select(CoinTransaction).where(
                CoinTransaction.dedup_key == payout_dedup_key(cup))).all()
            assert sorted(c.amount for c in coins) == [250, 500, 1000]
            captains = {db.session.get(Team, c.meta["team_id"]).captain_id for c in coins}
            assert captains == {c.user_id for c in coins} and len(captains) == 3
        assert db.session.scalar(select(db.func.count()).select_from(CoinTransaction)) == 3 * TOURNAMENTS
        assert db.session.scalar(select(db.func.count()).select_from(DedupKey)) == TOURNAMENTS
        assert len(events("payout_received")) == 3 * TOURNAMENTS
        assert len(events("achievement_earned")) == 3 * TOURNAMENTS
