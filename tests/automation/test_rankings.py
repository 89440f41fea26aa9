"""Team rankings: rules, idempotence, events for moved teams only, set-based SQL, job and CLI."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from deltacrown.errors import NotFound
from deltacrown.extensions import db
from deltacrown.models import OutboxEvent, Team
from deltacrown.outbox.events import check_event
from deltacrown.queue import QUEUE_NOTIFICATIONS, QUEUE_SCHEDULED, fetch_job, get_queue
from deltacrown.tournaments import jobs
from deltacrown.tournaments.rankings import recompute_team_rankings

from .money_factories import add_matches, add_teams, add_tournament, events, row_counts, standings


def test_points_wins_losses_and_tie_breaks(app):
    with app.app_context():
        a, b, c, d, e = add_teams(5)
        cup = add_tournament(team_ids=[a, b, c, d, e])
        add_matches(cup, [
            (a, b, a),     # a win, b loss
            (c, d, None),  # draw
            (c, e, c),     # c win, e loss
            (d, e, d),     # d win, e loss
            (b, e, None),  # draw
        ])
        result = recompute_team_rankings()
        assert result["status"] == "ok" and result["updated_count"] == 5
        # points: win 3, draw 1, loss 0. a 3 (1-0), c 4 (1-0, 1 draw), d 4 (1-0, 1 draw),
        # b 1 (0-1, 1 draw), e 1 (0-2, 1 draw).
        # Ties: c and d equal on points, wins, losses -> lower id (c) first;
        # b and e equal on points and wins -> fewer losses (b) first.
        assert standings() == {c: (4, 1, 0, 1), d: (4, 1, 0, 2), a: (3, 1, 0, 3),
                               b: (1, 0, 1, 4), e: (1, 0, 2, 5)}


def test_scheduled_matches_do_not_count_and_idle_teams_are_ranked(app):
    from deltacrown.models import Match
    from deltacrown.timeutil import utcnow

    with app.app_context():
        a, b, idle = add_teams(3)
        cup = add_tournament(team_ids=[a, b])
        add_matches(cup, [(b, a, b)])
        db.session.add(Match(tournament_id=cup, team_a_id=a, team_b_id=b, scheduled_at=utcnow()))  # not played
        db.session.commit()
        recompute_team_rankings()
        # idle and a are level on points and wins; idle has fewer losses.
        assert standings() == {b: (3, 1, 0, 1), idle: (0, 0, 0, 2), a: (0, 0, 1, 3)}


def test_second_run_changes_nothing_and_emits_nothing(app, count_queries):
    with app.app_context():
        teams = add_teams(6)
        cup = add_tournament(team_ids=teams)
        add_matches(cup, [(teams[i], teams[i + 1], teams[i + 1]) for i in range(5)])
        recompute_team_rankings()
        add_matches(cup, [(teams[5], teams[0], teams[0]), (teams[0], teams[1], teams[0])])
        moved = recompute_team_rankings()
        assert moved["moved_count"] > 0
        before, counts = standings(), row_counts()

        again = recompute_team_rankings()
        assert again["updated_count"] == 0 and again["moved_count"] == 0
        assert standings() == before
        assert row_counts() == counts  # no new ranking_changed events


def test_teams_are_locked_before_the_current_ranks_are_read(app, count_queries):
    with app.app_context():
        add_teams(2)
        dialect = db.engine.dialect.name
        with count_queries() as counted:
            recompute_team_rankings()
    first, later = counted.statements[0], counted.statements[1:]
    if dialect == "postgresql":
        assert first == "LOCK TABLE teams IN SHARE ROW EXCLUSIVE MODE"
    else:  # opens sqlite3's write transaction (and so takes the write lock)
        assert first.startswith("UPDATE teams")
    # The standings and the current ranks are read only after the lock.
    assert [s.split()[0] for s in later][:3] == ["CREATE", "INSERT", "INSERT"]
    assert later[2].lstrip().startswith("INSERT INTO outbox_events")  # old ranks vs new, before the UPDATE


def test_ranking_changed_only_for_teams_whose_rank_moved(app):
    with app.app_context():
        a, b, c, d = add_teams(4)
        cup = add_tournament(team_ids=[a, b, c, d])
        add_matches(cup, [(a, b, a), (a, c, a), (b, c, b), (c, d, c)])
        # a 6 (2-0), b 3 (1-1), c 3 (1-2), d 0 (0-1)
        recompute_team_rankings()
        assert events("ranking_changed") == []  # a first rank is not a move
        assert {t: s[3] for t, s in standings().items()} == {a: 1, b: 2, c: 3, d: 4}

        add_matches(cup, [(c, a, c), (c, b, c), (d, a, None)])
        # c 9 (3-2), a 7 (2-1, 1 draw), b 3 (1-2), d 1 (0-1, 1 draw): d keeps 4th
        result = recompute_team_rankings()
        assert {t: s[3] for t, s in standings().items()} == {c: 1, a: 2, b: 3, d: 4}
        assert result["moved_count"] == 3
        assert sorted(events("ranking_changed"), key=lambda p: p["team_id"]) == sorted([
            {"team_id": c, "old_rank": 3, "new_rank": 1},
            {"team_id": a, "old_rank": 1, "new_rank": 2},
            {"team_id": b, "old_rank": 2, "new_rank": 3},
        ], key=lambda p: p["team_id"])
        for payload in events("ranking_changed"):  # the SQL writes the declared shape, as emit() would
            check_event("ranking_changed", payload)


def test_ranking_events_are_relayed_right_after_the_commit(app):
    """Written by INSERT .. SELECT, not emit(): still enqueued at commit, not a minute later by the sweep."""
    with app.app_context():
        a, b, c = add_teams(3)
        cup = add_tournament(team_ids=[a, b, c])
        add_matches(cup, [(a, b, a), (b, c, b)])
        recompute_team_rankings()  # a 1st, b 2nd, c 3rd
        add_matches(cup, [(c, a, c), (c, b, c)])
        queue = get_queue(QUEUE_NOTIFICATIONS)
        queue.empty()
        assert recompute_team_rankings()["moved_count"] == 3
        moved = db.session.execute(select(OutboxEvent.id, OutboxEvent.relayed_at)
                                   .where(OutboxEvent.type == "ranking_changed")).all()
        assert len(moved) == 3 and all(relayed_at is not None for _, relayed_at in moved)
        # One job for the recompute's events (a job per event was most of a big recompute's time).
        assert [(j.func_name, j.args) for j in queue.jobs] == [
            ("deltacrown.outbox.dispatch.handle_events", [sorted(event_id for event_id, _ in moved)])]


def test_ranking_events_are_written_claimed_with_no_statement_of_the_relay(app, count_queries):
    """The INSERT .. SELECT writes the events claimed and returns their ids: the relay needs no
    UPDATE of thousands of outbox rows (nor reads of the newest event id) to enqueue them."""
    with app.app_context():
        a, b, c = add_teams(3)
        cup = add_tournament(team_ids=[a, b, c])
        add_matches(cup, [(a, b, a), (b, c, b)])
        recompute_team_rankings()
        add_matches(cup, [(c, a, c), (c, b, c)])
        get_queue(QUEUE_NOTIFICATIONS).empty()
        with count_queries() as counted:
            assert recompute_team_rankings()["moved_count"] == 3
        on_events = [" ".join(s.split()[:3]) for s in counted.statements if "outbox_events" in s]
        assert on_events == ["INSERT INTO outbox_events"]
        moved = db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.type == "ranking_changed",
                                                                OutboxEvent.relayed_at.is_not(None))).all()
        assert [j.args for j in get_queue(QUEUE_NOTIFICATIONS).jobs] == [[sorted(moved)]]


def test_one_tournament_recomputes_its_teams_from_all_their_matches(app):
    with app.app_context():
        a, b, c, d = add_teams(4)
        old_cup = add_tournament(status="completed", team_ids=[a, b, c, d])
        new_cup = add_tournament(team_ids=[a, b])
        add_matches(old_cup, [(a, c, a), (c, d, c)])
        add_matches(new_cup, [(a, b, a)])
        result = recompute_team_rankings(new_cup)
        assert result["tournament_id"] == new_cup
        table = standings()
        # a and b play in new_cup: their totals include old_cup's matches too.
        assert table[a][:3] == (6, 2, 0)
        assert table[b][:3] == (0, 0, 1)
        # c and d are outside the scope: totals untouched (still 0), but ranked.
        assert table[c][:3] == (0, 0, 0) and table[d][:3] == (0, 0, 0)
        assert sorted(s[3] for s in table.values()) == [1, 2, 3, 4]
        # A full run then catches c and d up; a and b were already right.
        recompute_team_rankings()
        table = standings()
        assert table[a][:3] == (6, 2, 0) and table[c][:3] == (3, 1, 1) and table[d][:3] == (0, 0, 1)


def test_unknown_tournament_is_refused_with_nothing_written(app):
    with app.app_context():
        teams = add_teams(2)
        cup = add_tournament(team_ids=teams)
        add_matches(cup, [(teams[0], teams[1], teams[0])])
        with pytest.raises(NotFound):
            recompute_team_rankings(cup + 100)
        assert all(s == (0, 0, 0, None) for s in standings().values())


def _add_league(size: int) -> int:
    """`size` more teams, ranked once, then new results that move many of them."""
    teams = add_teams(size)
    cup = add_tournament(team_ids=teams)
    add_matches(cup, [(teams[i], teams[(i + 1) % size], teams[i] if i % 3 else None) for i in range(size)])
    recompute_team_rankings()
    add_matches(cup, [(teams[i], teams[(i + 2) % size], teams[(i + 2) % size]) for i in range(0, size, 2)])
    return cup


@pytest.mark.parametrize("tournament_scope", [False, True], ids=["all-teams", "one-tournament"])
def test_statement_count_is_the_same_for_10_and_5000_teams(app, count_queries, tournament_scope):
    counts = {}
    with app.app_context():
        for total, added in ((10, 10), (5000, 4990)):
            cup = _add_league(added)
            assert db.session.scalar(select(db.func.count()).select_from(Team)) == total
            with count_queries() as counted:
                result = recompute_team_rankings(cup if tournament_scope else None)
            assert result["moved_count"] > 0  # the event insert is among what is counted
            counts[total] = counted.count
    assert counts[10] == counts[5000], counts
    # tournament check, lock, standings (create, fill), events (written claimed: nothing of the
    # relay's), update, drop.
    assert counts[10] <= 7, counts


def test_recompute_rankings_job_runs_on_a_real_worker(app, run_jobs):
    with app.app_context():
        a, b = add_teams(2)
        cup = add_tournament(team_ids=[a, b])
        add_matches(cup, [(b, a, b)])
        job = jobs.recompute_rankings.enqueue()
        assert job.origin == QUEUE_SCHEDULED
        scoped = jobs.recompute_rankings.enqueue(cup)
        missing = jobs.recompute_rankings.enqueue(cup + 100)
    run_jobs()
    with app.app_context():
        assert fetch_job(job.id).return_value()["updated_count"] == 2
        assert fetch_job(scoped.id).return_value()["updated_count"] == 0
        failed = fetch_job(missing.id)
        assert failed.get_status() == "finished"  # a permanent error is a result, not a retry
        assert failed.return_value()["error"]["code"] == "not_found"
        assert standings()[b] == (3, 1, 0, 1)


def test_recompute_rankings_command(app, runner, run_jobs):
    with app.app_context():
        a, b = add_teams(2)
        cup = add_tournament(team_ids=[a, b])
        add_matches(cup, [(a, b, a)])
    out = runner.invoke(args=["recompute-rankings"])
    assert out.exit_code == 0, out.output
    assert "2 team(s) updated" in out.output

    out = runner.invoke(args=["recompute-rankings", "--tournament-id", str(cup)])
    assert out.exit_code == 0 and "0 team(s) updated" in out.output

    out = runner.invoke(args=["recompute-rankings", "--tournament-id", str(cup + 100)])
    assert out.exit_code == 1
    assert out.output.strip() == f"Error: tournament {cup + 100} does not exist"

    out = runner.invoke(args=["recompute-rankings", "--tournament-id", str(cup + 100), "--enqueue"])
    assert out.exit_code == 1 and "does not exist" in out.output

    with app.app_context():
        add_matches(cup, [(b, a, b), (b, a, b)])
    out = runner.invoke(args=["recompute-rankings", "--enqueue"])
    assert out.exit_code == 0 and "Enqueued recompute_rankings as job" in out.output
    run_jobs()
    with app.app_context():
        assert standings()[b] == (6, 2, 1, 1)
