"""Team rankings: points, wins, losses and rank, recomputed from completed matches.

Rules
-----
* Points: a win is worth 3, a draw 1, a loss 0. A completed match with no
  winner (`winner_id` NULL) is a draw. Only matches with status "completed" count.
* Rank: every team gets a distinct position, 1 = best. Order: points (high
  first), then wins (more first), then losses (fewer first), then team id
  (older team first) so ties always resolve the same way.
* Scope: `recompute_team_rankings()` recomputes every team's totals from all
  completed matches. `recompute_team_rankings(tournament_id)` recomputes the
  totals of the teams taking part in that tournament (registered, or playing a
  match in it) — from ALL their completed matches, not only that tournament's,
  so a team's totals are always the same whichever run computed them. Ranks are
  positions among all teams, so they are always recomputed for everybody.
* `ranking_changed` events go only to teams whose rank moved from one position
  to another; a team's first rank (rank was NULL) is not a move.

How (and why this way)
----------------------
Set-based SQL, so the number of statements does not grow with the number of
teams: the standings (an aggregate over every completed match with a window
function for the rank) are computed ONCE into a temporary table — computing
them twice, for the SELECT and the UPDATE, would run the costly aggregate twice
(BENCHMARKS.md) — then one INSERT .. SELECT writes a ranking_changed event for
each team whose rank moves (old and new rank side by side), and one UPDATE ...
FROM the temporary table writes the new values — only rows whose values differ,
so a second run in a row updates nothing and emits nothing. All of it is one
transaction that first locks the teams against other writers (on PostgreSQL
LOCK TABLE in SHARE ROW EXCLUSIVE mode, which lets readers through but
serialises concurrent recomputes and other writers to `teams`; on SQLite the
database write lock), so the "before" ranks we compare against cannot change
under us. Needs SQLite >= 3.35 (UPDATE ... FROM, RETURNING) or PostgreSQL.

The events are written by that one INSERT .. SELECT rather than `emit()` per
team (which would flush thousands of ORM objects); they are plain outbox rows
all the same, relayed right after the commit like any other. The INSERT writes
them claimed and returns their ids (`relay.insert_claimed`), so the relay needs
no statement of its own to find and claim them (it was a sixth of the run).
"""
from __future__ import annotations

import sqlite3

from sqlalchemy import bindparam, select, text

from ..dedup import generate_dedup_key
from ..errors import NotFound
from ..extensions import db
from ..outbox.models import OutboxEvent
from ..outbox.relay import insert_claimed
from ..outbox.services import emit
from ..timeutil import utcnow
from .models import Match, Tournament

POINTS_FOR_WIN = 3
POINTS_FOR_DRAW = 1
POINTS_FOR_LOSS = 0

# Teams whose totals this run recomputes: all of them, or one tournament's. Every match
# side is a team (NOT NULL foreign keys; new_totals below starts from teams anyway), so for
# all of them the totals need no filter: filtering 400,000 match sides by a list of every
# team was about a fifth of the run on PostgreSQL (bench/FINDINGS.md).
_ALL_TEAMS = "SELECT id AS team_id FROM teams"
_IN_SCOPE = "WHERE team_id IN (SELECT team_id FROM scope)"
_TOURNAMENT_TEAMS = """
    SELECT team_id FROM registrations WHERE tournament_id = :tournament_id
    UNION SELECT team_a_id FROM matches WHERE tournament_id = :tournament_id
    UNION SELECT team_b_id FROM matches WHERE tournament_id = :tournament_id
"""

# The standings query: every team's new points, wins, losses and rank. Teams outside the
# scope keep their stored totals but are still ranked among everybody.
_STANDINGS_SQL = f"""
WITH scope AS ({{scope}}),
sides AS (
    SELECT team_a_id AS team_id, winner_id FROM matches WHERE status = 'completed'
    UNION ALL
    SELECT team_b_id AS team_id, winner_id FROM matches WHERE status = 'completed'
),
totals AS (
    SELECT team_id,
           SUM(CASE WHEN winner_id = team_id THEN 1 ELSE 0 END) AS wins,
           SUM(CASE WHEN winner_id IS NULL THEN 1 ELSE 0 END) AS draws,
           SUM(CASE WHEN winner_id IS NOT NULL AND winner_id <> team_id THEN 1 ELSE 0 END) AS losses
    FROM sides
    {{totals_filter}}
    GROUP BY team_id
),
new_totals AS (
    SELECT t.id,
           CASE WHEN s.team_id IS NULL THEN t.points
                ELSE COALESCE(x.wins, 0) * {int(POINTS_FOR_WIN)} + COALESCE(x.draws, 0) * {int(POINTS_FOR_DRAW)}
                     + COALESCE(x.losses, 0) * {int(POINTS_FOR_LOSS)} END AS points,
           CASE WHEN s.team_id IS NULL THEN t.wins ELSE COALESCE(x.wins, 0) END AS wins,
           CASE WHEN s.team_id IS NULL THEN t.losses ELSE COALESCE(x.losses, 0) END AS losses
    FROM teams t
    LEFT JOIN scope s ON s.team_id = t.id
    LEFT JOIN totals x ON x.team_id = t.id
),
standings AS (
    SELECT id, points, wins, losses,
           ROW_NUMBER() OVER (ORDER BY points DESC, wins DESC, losses ASC, id ASC) AS new_rank
    FROM new_totals
)
SELECT id, points, wins, losses, new_rank FROM standings
"""

# The standings, once per run. Temporary tables are private to the connection; PostgreSQL
# drops it at commit (or rollback), SQLite by the explicit DROP before commit (DDL is
# transactional there, so a rollback removes it too).
# (Created empty, then filled by INSERT .. SELECT: PostgreSQL takes no bound parameters
# in CREATE TABLE .. AS.)
_STANDINGS_COLUMNS = "(id INTEGER PRIMARY KEY, points INTEGER, wins INTEGER, losses INTEGER, new_rank INTEGER)"
_CREATE_STANDINGS_SQL = {
    "postgresql": f"CREATE TEMPORARY TABLE ranking_standings {_STANDINGS_COLUMNS} ON COMMIT DROP",
    "sqlite": f"CREATE TEMPORARY TABLE ranking_standings {_STANDINGS_COLUMNS}",
}
_FILL_STANDINGS_SQL = "INSERT INTO ranking_standings (id, points, wins, losses, new_rank) {standings}"
_DROP_STANDINGS_SQL = {"sqlite": "DROP TABLE temp.ranking_standings"}

# The ranking_changed events, straight from the standings: teams whose rank moved from one
# position to another (read before the UPDATE below overwrites the old rank).
_JSON_OBJECT = {"postgresql": "json_build_object", "sqlite": "json_object"}
_MOVED_EVENTS_SQL = """
INSERT INTO outbox_events (type, payload, created_at, relayed_at)
SELECT 'ranking_changed', {json_object}('team_id', st.id, 'old_rank', t.rank, 'new_rank', st.new_rank), :now,
       :relayed_at
FROM ranking_standings st JOIN teams t ON t.id = st.id
WHERE t.rank IS NOT NULL AND t.rank <> st.new_rank
ORDER BY st.new_rank
RETURNING id
"""

# Only rows whose values differ are written: a second run updates nothing.
_UPDATE_SQL = """
UPDATE teams
SET points = st.points, wins = st.wins, losses = st.losses, rank = st.new_rank
FROM ranking_standings AS st
WHERE teams.id = st.id
  AND (teams.points <> st.points OR teams.wins <> st.wins OR teams.losses <> st.losses
       OR teams.rank IS NULL OR teams.rank <> st.new_rank)
"""


# Taken first, so the "before" ranks read next cannot change under us.
# PostgreSQL: SHARE ROW EXCLUSIVE lets readers through but conflicts with itself
# and with every writer of `teams`. SQLite: Python's sqlite3 opens its implicit
# transaction only at the first write statement, so a no-op UPDATE opens it and
# takes the database write lock before the SELECT.
_LOCK_SQL = {
    "postgresql": "LOCK TABLE teams IN SHARE ROW EXCLUSIVE MODE",
    "sqlite": "UPDATE teams SET rank = rank WHERE 1 = 0",
}


def recompute_team_rankings(tournament_id: int | None = None) -> dict:
    """Recompute totals and ranks (see the module docstring for the rules).

    Returns {status: "ok", updated_count, moved_count, tournament_id, dedup_key}:
    `updated_count` is the number of team rows changed, `moved_count` the number
    of ranking_changed events written. The dedup key names this run's arguments
    for logs and job results; it is not stored, since recomputing is naturally
    idempotent and is meant to run again every day.
    """
    dedup_key = generate_dedup_key("recompute_team_rankings", tournament_id=tournament_id)
    params = {}
    if tournament_id is None:
        scope, totals_filter = _ALL_TEAMS, ""
    else:
        if db.session.get(Tournament, tournament_id) is None:
            raise NotFound(f"tournament {tournament_id} does not exist")
        scope, totals_filter, params = _TOURNAMENT_TEAMS, _IN_SCOPE, {"tournament_id": tournament_id}
    standings = _STANDINGS_SQL.format(scope=scope, totals_filter=totals_filter)

    dialect = db.session.get_bind().dialect.name
    if dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(f"ranking recompute needs SQLite 3.35 or newer (UPDATE ... FROM, RETURNING); "
                           f"this Python has {sqlite3.sqlite_version}")
    try:
        db.session.execute(text(_LOCK_SQL[dialect]))
        db.session.execute(text(_CREATE_STANDINGS_SQL[dialect]))
        db.session.execute(text(_FILL_STANDINGS_SQL.format(standings=standings)), params)
        moved_count = len(insert_claimed(
            db.session, text(_MOVED_EVENTS_SQL.format(json_object=_JSON_OBJECT[dialect]))
            .bindparams(bindparam("now", utcnow(), type_=OutboxEvent.created_at.type))))
        updated_count = db.session.execute(text(_UPDATE_SQL)).rowcount
        if dialect in _DROP_STANDINGS_SQL:
            db.session.execute(text(_DROP_STANDINGS_SQL[dialect]))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return {"status": "ok", "updated_count": updated_count, "moved_count": moved_count,
            "tournament_id": tournament_id, "dedup_key": dedup_key}


def announce_standings(result: dict) -> list[int]:
    """After a recompute (`result`, from recompute_team_rankings): `standings_updated` for each
    tournament whose standings card should follow it (the reactions edit the card; an edit that
    changes nothing is not made). A tournament's own recompute (its wrap-up) always announces
    it; the all-teams recompute announces every ongoing tournament with a completed match, and
    only when it changed something. Its own transaction, after the recompute's."""
    tournament_id = result.get("tournament_id")
    if tournament_id is None and not result.get("updated_count"):
        return []
    played = select(Match.tournament_id).where(Match.status == "completed")
    stmt = select(Tournament.id).where(Tournament.id.in_(played))
    stmt = stmt.where(Tournament.id == tournament_id) if tournament_id is not None \
        else stmt.where(Tournament.status == "ongoing")
    ids = list(db.session.scalars(stmt.order_by(Tournament.id)))
    for standing_id in ids:
        emit("standings_updated", tournament_id=standing_id)
    db.session.commit()
    return ids


def tournament_standings(tournament) -> list[dict]:
    """One tournament's table, from its completed matches only (the rules above: 3 / 1 / 0
    points, then wins, fewer losses, older team): [{team, played, wins, draws, losses,
    points, position}] for every registered team and every team that played in it."""
    teams = {reg.team.id: reg.team for reg in tournament.registrations}
    for match in tournament.matches:
        teams.setdefault(match.team_a.id, match.team_a)
        teams.setdefault(match.team_b.id, match.team_b)
    rows = {team_id: {"team": team, "played": 0, "wins": 0, "draws": 0, "losses": 0}
            for team_id, team in teams.items()}
    for match in tournament.matches:
        if match.status != "completed":
            continue
        for side in (match.team_a_id, match.team_b_id):
            row = rows[side]
            row["played"] += 1
            if match.winner_id is None:
                row["draws"] += 1
            elif match.winner_id == side:
                row["wins"] += 1
            else:
                row["losses"] += 1
    for row in rows.values():
        row["points"] = (row["wins"] * POINTS_FOR_WIN + row["draws"] * POINTS_FOR_DRAW
                         + row["losses"] * POINTS_FOR_LOSS)
    table = sorted(rows.values(), key=lambda r: (-r["points"], -r["wins"], r["losses"], r["team"].id))
    for position, row in enumerate(table, start=1):
        row["position"] = position
    return table
