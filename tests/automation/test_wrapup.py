"""Tournament wrap-up: rankings, then payouts, then wrapped_up_at; idempotent; jobs and CLI."""
from __future__ import annotations

import importlib

import pytest
from sqlalchemy import select

from deltacrown.economy.models import CoinTransaction
from deltacrown.economy import jobs
from deltacrown.economy.payouts import distribute_tournament_payouts
from deltacrown.economy.wrapup import check_tournament_wrapup, wrap_up_tournament
from deltacrown.errors import Conflict, NotFound
from deltacrown.extensions import db
from deltacrown.models import Tournament
from deltacrown.ops.schedule import JOBS_BY_NAME
from deltacrown.queue import QUEUE_DEFAULT, QUEUE_SCHEDULED, fetch_job

from .money_factories import add_matches, add_teams, add_tournament, events, row_counts, standings


def _played_cup(status="completed"):
    a, b, c = add_teams(3)
    cup = add_tournament(status=status, team_ids=[a, b, c], placements=[c, a, b] if status == "completed" else [])
    add_matches(cup, [(c, a, c), (c, b, c), (a, b, a)])
    return cup, (a, b, c)


def _wrapped_up_at(cup):
    db.session.expire_all()
    return db.session.get(Tournament, cup).wrapped_up_at


def test_wrap_up_ranks_pays_and_marks_once(app):
    with app.app_context():
        cup, (a, b, c) = _played_cup()
        result = wrap_up_tournament(cup)
        assert result["status"] == "wrapped_up"
        assert result["rankings"]["updated_count"] == 3
        assert result["payouts"]["status"] == "distributed"
        assert standings() == {c: (6, 2, 0, 1), a: (3, 1, 1, 2), b: (0, 0, 2, 3)}
        assert sorted(c.amount for c in db.session.scalars(select(CoinTransaction))) == [250, 500, 1000]
        marked = _wrapped_up_at(cup)
        assert marked is not None

        counts = row_counts()
        again = wrap_up_tournament(cup)
        assert again["status"] == "already_wrapped_up"
        assert row_counts() == counts and _wrapped_up_at(cup) == marked


def test_wrap_up_after_a_manual_payout_still_completes(app):
    with app.app_context():
        cup, _ = _played_cup()
        distribute_tournament_payouts(cup)
        result = wrap_up_tournament(cup)
        assert result["status"] == "wrapped_up" and result["payouts"]["status"] == "already_distributed"
        assert len(events("payout_received")) == 3
        assert _wrapped_up_at(cup) is not None


def test_wrap_up_refuses_unknown_and_unfinished_tournaments(app):
    with app.app_context():
        ongoing, _ = _played_cup(status="ongoing")
        with pytest.raises(NotFound):
            wrap_up_tournament(ongoing + 100)
        with pytest.raises(Conflict):
            wrap_up_tournament(ongoing)
        db.session.rollback()
        assert row_counts()["coin_transactions"] == 0 and _wrapped_up_at(ongoing) is None
        assert all(s[3] is None for s in standings().values())


def test_check_wrapup_handles_each_pending_tournament_once(app):
    with app.app_context():
        first, _ = _played_cup()
        second, _ = _played_cup()
        ongoing, _ = _played_cup(status="ongoing")
        broken = add_tournament(status="completed", team_ids=add_teams(2))  # completed without placements

        result = check_tournament_wrapup()
        assert result["checked"] == 3 and result["wrapped_up"] == [first, second]
        assert result["failed"] == [{"tournament_id": broken,
                                     "error": f"tournament {broken} has no placements to pay"}]
        assert _wrapped_up_at(first) and _wrapped_up_at(second)
        assert _wrapped_up_at(ongoing) is None and _wrapped_up_at(broken) is None
        assert len(events("payout_received")) == 6

        counts = row_counts()
        again = check_tournament_wrapup()
        assert again["checked"] == 1 and again["wrapped_up"] == [] and len(again["failed"]) == 1
        assert row_counts() == counts


def test_job_functions_live_at_the_paths_the_scheduler_uses():
    for name, queue in (("recompute-rankings", QUEUE_SCHEDULED), ("check-tournament-wrapup", QUEUE_SCHEDULED),
                        ("distribute-payouts", QUEUE_DEFAULT)):
        module, _, attr = JOBS_BY_NAME[name].func.rpartition(".")
        fn = getattr(importlib.import_module(module), attr)
        assert callable(fn.enqueue) and fn.queue_name == queue
    assert jobs.wrap_up_tournament.queue_name == QUEUE_DEFAULT


def test_wrap_up_jobs_run_on_a_real_worker(app, run_jobs):
    with app.app_context():
        cup, _ = _played_cup()
        later, _ = _played_cup()
        on_demand = jobs.wrap_up_tournament.enqueue(cup)
        repeated = jobs.wrap_up_tournament.enqueue(cup)
        missing = jobs.wrap_up_tournament.enqueue(cup + 100)
    run_jobs()
    with app.app_context():
        assert fetch_job(on_demand.id).return_value()["status"] == "wrapped_up"
        assert fetch_job(repeated.id).return_value()["status"] == "already_wrapped_up"
        assert fetch_job(missing.id).return_value()["error"]["code"] == "not_found"
        assert _wrapped_up_at(later) is None
        sweep = jobs.check_tournament_wrapup.enqueue()
    run_jobs()
    with app.app_context():
        assert fetch_job(sweep.id).return_value() == {"status": "ok", "checked": 1, "wrapped_up": [later],
                                                      "failed": []}
        assert _wrapped_up_at(later) is not None
        coins = db.session.scalars(select(CoinTransaction)).all()
        assert len(coins) == 6
        assert {c.meta["job_id"] for c in coins} == {on_demand.id, sweep.id}


def test_check_wrapup_command(app, runner, run_jobs):
    with app.app_context():
        cup, _ = _played_cup()
    out = runner.invoke(args=["check-wrapup"])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == f"Checked 1 completed tournament(s) awaiting wrap-up; wrapped up: {cup}."
    out = runner.invoke(args=["check-wrapup"])
    assert out.exit_code == 0 and "Checked 0" in out.output

    with app.app_context():
        broken = add_tournament(status="completed", team_ids=add_teams(2))
    out = runner.invoke(args=["check-wrapup"])
    assert out.exit_code == 1
    assert f"tournament {broken}: tournament {broken} has no placements to pay" in out.output
    assert "Error: 1 tournament(s) could not be wrapped up" in out.output

    with app.app_context():
        db.session.execute(db.delete(Tournament).where(Tournament.id == broken))
        db.session.commit()
        pending, _ = _played_cup()
    out = runner.invoke(args=["check-wrapup", "--enqueue"])
    assert out.exit_code == 0 and "Enqueued check_tournament_wrapup as job" in out.output
    run_jobs()
    with app.app_context():
        assert _wrapped_up_at(pending) is not None
