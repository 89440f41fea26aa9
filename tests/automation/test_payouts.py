"""Tournament payouts: amounts, achievements, events, metadata, exactly-once, refusals, job, CLI, crash."""
from __future__ import annotations

import multiprocessing
from datetime import datetime

import pytest
from sqlalchemy import select

from deltacrown.economy import jobs
from deltacrown.dedup import DedupKey, canonical_json, generate_dedup_key
from deltacrown.economy.models import CoinTransaction
from deltacrown.economy.payouts import distribute_tournament_payouts, payout_dedup_key
from deltacrown.errors import Conflict, NotFound
from deltacrown.extensions import db
from deltacrown.models import Team, TeamAchievement
from deltacrown.queue import QUEUE_DEFAULT, fetch_job
from tests.support.processes import wait_for

from .money_factories import add_teams, add_tournament, events, row_counts


def test_dedup_key_is_stable_and_order_independent():
    key = generate_dedup_key("task", a=1, b="x")
    assert key == generate_dedup_key("task", b="x", a=1)
    assert len(key) == 64 and int(key, 16) >= 0
    assert canonical_json("task", b="x", a=1) == '{"args":{"a":1,"b":"x"},"task":"task"}'
    assert key != generate_dedup_key("task", a=2, b="x")
    assert key != generate_dedup_key("other", a=1, b="x")
    assert generate_dedup_key("t", tournament_id=1) != generate_dedup_key("t", tournament_id="1")
    with pytest.raises(TypeError):
        generate_dedup_key("t", when=datetime.now())


def _completed_cup(places: int = 3) -> tuple[int, list[int], list[int]]:
    teams = add_teams(4)
    cup = add_tournament(status="completed", team_ids=teams, placements=teams[:places])
    captains = [db.session.get(Team, t).captain_id for t in teams]
    return cup, teams, captains


def test_payout_pays_each_captain_once_with_achievements_and_events(app):
    with app.app_context():
        cup, teams, captains = _completed_cup()
        result = distribute_tournament_payouts(cup)
        key = payout_dedup_key(cup)
        assert result["status"] == "distributed" and result["dedup_key"] == key
        assert [(p["place"], p["team_id"], p["user_id"], p["amount"]) for p in result["payouts"]] == [
            (1, teams[0], captains[0], 1000), (2, teams[1], captains[1], 500), (3, teams[2], captains[2], 250)]

        coins = db.session.scalars(select(CoinTransaction).order_by(CoinTransaction.id)).all()
        assert [(c.user_id, c.amount, c.transaction_type, c.dedup_key) for c in coins] == [
            (captains[0], 1000, "tournament_payout", key), (captains[1], 500, "tournament_payout", key),
            (captains[2], 250, "tournament_payout", key)]
        achievements = db.session.scalars(select(TeamAchievement).order_by(TeamAchievement.id)).all()
        assert [(a.team_id, a.kind, a.tournament_id) for a in achievements] == [
            (teams[0], "tournament_champion", cup), (teams[1], "tournament_runner_up", cup),
            (teams[2], "tournament_third_place", cup)]
        assert events("payout_received") == [
            {"user_id": c.user_id, "team_id": c.meta["team_id"], "tournament_id": cup, "place": c.meta["place"],
             "amount": c.amount, "transaction_id": c.id} for c in coins]
        assert events("achievement_earned") == [{"achievement_id": a.id} for a in achievements]
        assert db.session.scalar(select(DedupKey.task).where(DedupKey.key == key)) == \
            "distribute_tournament_payouts"

        counts = row_counts()
        again = distribute_tournament_payouts(cup)
        assert again == {"status": "already_distributed", "dedup_key": key, "tournament_id": cup,
                         "payouts": result["payouts"]}
        assert row_counts() == counts


def test_coin_metadata_is_the_audit_trail(app):
    with app.app_context():
        cup, teams, _ = _completed_cup(places=2)
        distribute_tournament_payouts(cup)
        coins = db.session.scalars(select(CoinTransaction).order_by(CoinTransaction.id)).all()
        assert len(coins) == 2
        for place, coin in enumerate(coins, start=1):
            meta = dict(coin.meta)
            stamp = datetime.fromisoformat(meta.pop("timestamp"))
            assert stamp.utcoffset().total_seconds() == 0
            assert abs((stamp - coin.created_at).total_seconds()) < 1
            assert meta == {"tournament_id": cup, "place": place, "team_id": teams[place - 1],
                            "dedup_key": payout_dedup_key(cup), "job_id": None}  # None: not run by RQ


def test_an_achievement_awarded_by_hand_is_kept_not_duplicated(app):
    with app.app_context():
        cup, teams, _ = _completed_cup()
        manual = TeamAchievement(team_id=teams[0], kind="tournament_champion", tournament_id=cup)
        db.session.add(manual)
        db.session.commit()
        result = distribute_tournament_payouts(cup)
        assert result["payouts"][0]["achievement_id"] == manual.id
        assert db.session.scalar(select(db.func.count()).select_from(TeamAchievement)) == 3
        assert len(events("achievement_earned")) == 2  # the hand-made one was announced when made
        assert len(events("payout_received")) == 3


@pytest.mark.parametrize("case", ["unknown", "registration", "ongoing", "no-placements"])
def test_refused_payouts_write_nothing(app, case):
    with app.app_context():
        teams = add_teams(3)
        if case == "unknown":
            cup, error = add_tournament(status="completed", placements=teams) + 100, NotFound
        elif case == "no-placements":
            cup, error = add_tournament(status="completed", team_ids=teams), Conflict
        else:
            cup, error = add_tournament(status=case, team_ids=teams, placements=teams), Conflict
        with pytest.raises(error) as refused:
            distribute_tournament_payouts(cup)
        assert str(cup) in refused.value.message
        db.session.rollback()
        assert row_counts() == {"coin_transactions": 0, "dedup_keys": 0, "team_achievements": 0,
                                "outbox_events": 0}


def test_distribute_payouts_job_records_its_job_id(app, run_jobs):
    with app.app_context():
        cup, _, _ = _completed_cup()
        first = jobs.distribute_payouts.enqueue(cup)
        second = jobs.distribute_payouts.enqueue(cup)
        unknown = jobs.distribute_payouts.enqueue(cup + 100)
        assert first.origin == QUEUE_DEFAULT
    run_jobs()
    with app.app_context():
        assert fetch_job(first.id).return_value()["status"] == "distributed"
        assert fetch_job(second.id).return_value()["status"] == "already_distributed"
        refused = fetch_job(unknown.id)
        assert refused.get_status() == "finished"
        assert refused.return_value()["error"] == {"code": "not_found", "fields": {},
                                                   "message": f"tournament {cup + 100} does not exist"}
        coins = db.session.scalars(select(CoinTransaction)).all()
        assert len(coins) == 3 and {c.meta["job_id"] for c in coins} == {first.id}


def test_distribute_payouts_command(app, runner, run_jobs):
    with app.app_context():
        cup, teams, captains = _completed_cup()
        names = [db.session.get(Team, t).name for t in teams]
        ongoing = add_tournament(status="ongoing", team_ids=teams)

    out = runner.invoke(args=["distribute-payouts", str(cup)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == f"Tournament {cup}: paid 3 placed team(s)."
    assert lines[1] == f"  1st  {names[0]} (team {teams[0]}): 1000 coins to captain (user {captains[0]})"
    assert lines[2].startswith(f"  2nd  {names[1]}") and "500 coins" in lines[2]
    assert lines[3].startswith(f"  3rd  {names[2]}") and "250 coins" in lines[3]

    out = runner.invoke(args=["distribute-payouts", str(cup)])
    assert out.exit_code == 0
    assert out.output.splitlines()[0] == f"Tournament {cup}: payouts were already distributed; nothing paid now."
    assert out.output.splitlines()[1:] == lines[1:]

    for bad, message in ((cup + 100, f"tournament {cup + 100} does not exist"),
                         (ongoing, f"tournament {ongoing} is not completed")):
        out = runner.invoke(args=["distribute-payouts", str(bad)])
        assert out.exit_code == 1
        assert len(out.output.strip().splitlines()) == 1 and message in out.output
    out = runner.invoke(args=["distribute-payouts", "--enqueue", str(cup + 100)])
    assert out.exit_code == 1 and "does not exist" in out.output
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(CoinTransaction)) == 3

    with app.app_context():
        other = add_tournament(status="completed", placements=add_teams(1))
    out = runner.invoke(args=["distribute-payouts", "--enqueue", str(other)])
    assert out.exit_code == 0 and "Enqueued distribute_payouts as job" in out.output
    job_id = out.output.split(" as job ")[1].split()[0]
    run_jobs()
    with app.app_context():
        assert fetch_job(job_id).return_value()["payouts"][0]["amount"] == 1000


# --- a worker killed in the middle of the payout -----------------------------

def _pay_in_child(database_url, redis_url, tournament_id, pause_dir):
    """Child process: pause inside the payout transaction until killed."""
    from tests.conftest import make_test_app
    from tests.support.pausing import pause_at

    pause_at("payout:after_coins", pause_dir)

    app = make_test_app(database_url, redis_url)
    with app.app_context():
        distribute_tournament_payouts(tournament_id)


def _wait_for(path, process, seconds=60.0):
    def reached():
        assert process.is_alive(), "the payout process died before the pause point"
        return path.exists()

    wait_for(reached, timeout=seconds, message=f"{path.name} to appear")


def test_a_payout_killed_before_commit_leaves_nothing_and_the_retry_pays_once(app, database_url, redis_url,
                                                                              tmp_path):
    with app.app_context():
        cup, _, captains = _completed_cup()
    child = multiprocessing.get_context("spawn").Process(
        target=_pay_in_child, args=(database_url, redis_url, cup, str(tmp_path)))
    child.start()
    try:
        _wait_for(tmp_path / "payout-after_coins.reached", child)
        with app.app_context():  # coin rows are written but not committed: invisible
            assert db.session.scalar(select(db.func.count()).select_from(CoinTransaction)) == 0
            db.session.rollback()
    finally:
        child.kill()
        child.join(30)
    assert child.exitcode is not None and child.exitcode < 0  # killed, not finished

    with app.app_context():
        assert row_counts() == {"coin_transactions": 0, "dedup_keys": 0, "team_achievements": 0,
                                "outbox_events": 0}
        assert distribute_tournament_payouts(cup)["status"] == "distributed"
        assert distribute_tournament_payouts(cup)["status"] == "already_distributed"
        coins = db.session.scalars(select(CoinTransaction)).all()
        assert sorted((c.user_id, c.amount) for c in coins) == sorted(
            zip(captains[:3], (1000, 500, 250)))
