"""Rankings: recompute_team_rankings() vs one hand-written aggregate UPDATE computing the same numbers."""
from __future__ import annotations

from sqlalchemy import text

from .. import seed
from ..harness import BenchEnv, CaseResult, count_statements, measure

TARGET = "≤ 2× the aggregate statement; statements constant in the team count"

# Written independently of rankings.py (a cross-check of its numbers too): 3 points a win,
# 1 a draw (completed, no winner), rank by points, wins, fewer losses, older team.
AGGREGATE_UPDATE = """
UPDATE teams SET points = s.points, wins = s.wins, losses = s.losses, rank = s.position
FROM (
    SELECT t.id, 3 * COALESCE(a.w, 0) + COALESCE(a.d, 0) AS points, COALESCE(a.w, 0) AS wins,
           COALESCE(a.l, 0) AS losses,
           ROW_NUMBER() OVER (ORDER BY 3 * COALESCE(a.w, 0) + COALESCE(a.d, 0) DESC, COALESCE(a.w, 0) DESC,
                                       COALESCE(a.l, 0) ASC, t.id ASC) AS position
    FROM teams t LEFT JOIN (
        SELECT team_id, SUM(win) AS w, SUM(draw) AS d, SUM(loss) AS l FROM (
            SELECT team_a_id AS team_id,
                   CASE WHEN winner_id = team_a_id THEN 1 ELSE 0 END AS win,
                   CASE WHEN winner_id IS NULL THEN 1 ELSE 0 END AS draw,
                   CASE WHEN winner_id = team_b_id THEN 1 ELSE 0 END AS loss
            FROM matches WHERE status = 'completed'
            UNION ALL
            SELECT team_b_id,
                   CASE WHEN winner_id = team_b_id THEN 1 ELSE 0 END,
                   CASE WHEN winner_id IS NULL THEN 1 ELSE 0 END,
                   CASE WHEN winner_id = team_a_id THEN 1 ELSE 0 END
            FROM matches WHERE status = 'completed'
        ) sides GROUP BY team_id
    ) a ON a.team_id = t.id
) s
WHERE teams.id = s.id
"""

# Every run starts from yesterday's standings being stale: totals zero and the ranks
# reversed, so nearly every team moves (the heavy case: an UPDATE of every row and a
# ranking_changed event for each mover).
STALE = "UPDATE teams SET points = 0, wins = 0, losses = 0, rank = (SELECT COUNT(*) FROM teams) + 1 - id"


def _standings(db):
    return db.session.execute(text("SELECT id, points, wins, losses, rank FROM teams ORDER BY id")).all()


def run(env: BenchEnv) -> CaseResult:
    from deltacrown.outbox.models import OutboxEvent
    from deltacrown.tournaments.rankings import recompute_team_rankings

    s, db = env.sizes, env.db
    result = CaseResult("rankings", env.kind, size=f"{s.teams:,} teams, {s.matches:,} completed matches",
                        target=TARGET, ratio_label="ours / aggregate UPDATE")

    def stale():
        db.session.execute(text(STALE))
        db.session.execute(db.delete(OutboxEvent))
        db.session.commit()

    with env.app.app_context():
        # Statement count at a tenth of the size, then at full size: must be equal.
        small_teams = max(10, s.teams // 10)
        seed.teams_and_matches(small_teams, s.matches // 10)
        stale()
        with count_statements(db.engine) as small:
            recompute_team_rankings()
    env.reset()
    with env.app.app_context():
        seed.teams_and_matches(s.teams, s.matches)
        env.analyze()
        stale()
        with count_statements(db.engine) as large:
            outcome = recompute_team_rankings()
        ours_standings = _standings(db)

        def aggregate():
            db.session.execute(text(AGGREGATE_UPDATE))
            db.session.commit()

        stale()
        aggregate()
        if _standings(db) != ours_standings:
            raise AssertionError("the aggregate statement and recompute_team_rankings() disagree")
        result.notes.append(f"checked: both write identical points/wins/losses/rank for all {s.teams:,} teams; "
                            f"ours also wrote {outcome['moved_count']:,} ranking_changed events")

        result.ours = measure("recompute_team_rankings()", lambda: recompute_team_rankings(), setup=stale,
                              repeats=s.repeats, engine=db.engine)
        result.baseline = measure("one aggregate UPDATE", aggregate, setup=stale, repeats=s.repeats,
                                  engine=db.engine)
    constant = small["n"] == large["n"]
    result.notes.append(f"statements: {small['n']} for {small_teams:,} teams, {large['n']} for {s.teams:,} teams "
                        f"({'constant' if constant else 'NOT constant'})")
    result.ratio = result.ours.median / result.baseline.median
    result.met = result.ratio <= 2.0 and constant
    return result
