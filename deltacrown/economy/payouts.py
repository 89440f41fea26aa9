"""How tournament payouts work. Read this file top to bottom.

When a tournament is completed, its placed teams (1st, 2nd, 3rd) are paid in
coins, once:

    place   coins (config PAYOUT_TABLE)   achievement (TeamAchievement.kind)
    1st     1000                          tournament_champion
    2nd      500                          tournament_runner_up
    3rd      250                          tournament_third_place

The coins go to the captain of each placed team, as one CoinTransaction per
place (transaction_type "tournament_payout"). Each payout also writes the
team's achievement row and two outbox events, committed with the coins:
`payout_received` {user_id, team_id, tournament_id, place, amount,
transaction_id} and `achievement_earned` {achievement_id}; the event pipeline
turns them into notifications.

Who calls it: the wrap-up (deltacrown/economy/wrapup.py, queued when a
tournament is completed and re-checked hourly), the `distribute-payouts` job
(deltacrown/economy/jobs.py) and `flask distribute-payouts TOURNAMENT_ID`
(deltacrown/economy/cli.py). All of them call `distribute_tournament_payouts`.

Exactly once
------------
Any of those callers may run more than once for the same tournament: two
workers racing, a retry after a worker was killed mid-job, an admin rerunning
it by hand. What makes the payout happen once is a unique constraint, not a
check: the run inserts its dedup key (`generate_dedup_key(
"distribute_tournament_payouts", tournament_id=...)`) into `dedup_keys` in the
SAME transaction as the coin rows.

* The first run to insert the key holds it until it commits. On PostgreSQL a
  racing run's INSERT of the same key waits on the unique index; when the first
  commits, it fails with IntegrityError, rolls back everything it did and
  reports `already_distributed`. (If the first rolled back instead, the waiting
  run's insert succeeds and it pays — still once.)
* A run killed before commit leaves nothing: key, coins, achievements and
  events were all in the one uncommitted transaction. Its retry pays.
* A rerun after success fails on the key and reports `already_distributed`.

There is deliberately no "has it been paid?" check before the insert: a check
without the constraint is not safe under concurrency, and with the constraint
it is not needed.

Bad input is refused before anything is written: an unknown tournament
(NotFound), one that is not completed or has no placements (Conflict).

Large payouts wait for a second admin
-------------------------------------
With `PAYOUT_APPROVAL_THRESHOLD` set (coins; unset = off), a place whose amount is
at least the threshold is not paid by this run: it is written, in the same
transaction and under the same key, as a `Payout` row (economy/models.py) with
status "pending_approval" and no coins, and a `payout_held` event tells the
team's captain "payout of N coins awaiting approval". The smaller places of the
same tournament are paid at once, as above. The achievement is awarded either
way. Every caller (wrap-up, the `distribute-payouts` job, command and "run now")
comes through here, so none of them can pay a held payout: only an approval can.

What happens next is economy/approvals.py: another admin than the one who
completed the tournament (`Tournament.completed_by_id`) approves it, which pays
it by the same rule as this file, a unique dedup key inserted in the same
transaction as the coins (`approvals.decision_dedup_key(payout_id)`), so racing approvals,
a retry after a crash and a second click pay it once; or rejects it with a
reason, and the captain is told why.
"""
from __future__ import annotations

from flask import current_app
from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..dedup import DedupKey, generate_dedup_key
from ..errors import Conflict, NotFound
from ..extensions import db
from ..outbox.services import emit
from ..signals import checkpoint
from ..teams.models import Team, TeamAchievement
from ..timeutil import utcnow
from ..tournaments.models import Placement, Tournament
from .models import CoinTransaction, Payout

TASK_NAME = "distribute_tournament_payouts"
TRANSACTION_TYPE = "tournament_payout"
ACHIEVEMENT_FOR_PLACE = {1: "tournament_champion", 2: "tournament_runner_up", 3: "tournament_third_place"}


def payout_dedup_key(tournament_id: int) -> str:
    """The one key a tournament's payout may ever commit under."""
    return generate_dedup_key(TASK_NAME, tournament_id=tournament_id)


def distribute_tournament_payouts(tournament_id: int) -> dict:
    """Pay a completed tournament's placed teams, exactly once.

    Returns {status: "distributed", dedup_key, tournament_id, payouts: [...]} on
    the run that paid, and {status: "already_distributed", dedup_key,
    tournament_id, payouts: [...]} (what that run paid) on every other run.
    Each payout is {place, team_id, team_name, user_id, amount, status, transaction_id,
    payout_id, achievement, achievement_id}: status "paid" (transaction_id is its coins)
    or "pending_approval" (held for a second admin, payout_id is its Payout row; see
    "Large payouts wait for a second admin" above).
    """
    # 1. Validate first, so a refused request writes nothing.
    tournament = db.session.get(Tournament, tournament_id)
    if tournament is None:
        raise NotFound(f"tournament {tournament_id} does not exist")
    if tournament.status != "completed":
        raise Conflict(f"tournament {tournament_id} is not completed (status: {tournament.status}); "
                       "payouts are made only after completion")
    placed = db.session.execute(
        select(Placement, Team).join(Team, Team.id == Placement.team_id)
        .where(Placement.tournament_id == tournament_id).order_by(Placement.place)
    ).all()
    if not placed:
        raise Conflict(f"tournament {tournament_id} has no placements to pay")

    dedup_key = payout_dedup_key(tournament_id)
    payout_table = current_app.config["PAYOUT_TABLE"]
    threshold = current_app.config.get("PAYOUT_APPROVAL_THRESHOLD")  # None: approval is off
    job = get_current_job()  # None when run from the CLI or a request
    now = utcnow()

    try:
        # 2. Claim the key. This INSERT is the exactly-once guard (see above):
        #    flushed first so a racing run blocks here, before doing any work.
        claim = DedupKey(key=dedup_key, task=TASK_NAME, created_at=now)
        db.session.add(claim)
        db.session.flush()

        # 3. The coins: one transaction per placed team, to its captain. The
        #    metadata is the audit trail of why these coins exist. A payout at or
        #    above the approval threshold gets no coins here: a held Payout row.
        payouts = []
        for placement, team in placed:
            amount = int(payout_table.get(placement.place, 0))
            coins = held = None
            if amount > 0 and threshold is not None and amount >= threshold:
                held = Payout(tournament_id=tournament_id, team_id=team.id, user_id=team.captain_id,
                              place=placement.place, amount=amount, threshold=threshold,
                              status="pending_approval", created_at=now,
                              completed_by_id=tournament.completed_by_id)
                db.session.add(held)
            elif amount > 0:
                coins = CoinTransaction(
                    user_id=team.captain_id, amount=amount, transaction_type=TRANSACTION_TYPE,
                    dedup_key=dedup_key, created_at=now,
                    meta={"tournament_id": tournament_id, "place": placement.place, "team_id": team.id,
                          "dedup_key": dedup_key, "timestamp": now.isoformat(),
                          "job_id": job.id if job else None},
                )
                db.session.add(coins)
            payouts.append({"placement": placement, "team": team, "amount": amount, "coins": coins, "held": held})
        db.session.flush()  # coin rows written (not committed): ids for the events
        checkpoint.send("payout:after_coins")  # coins flushed, not committed

        # 4. The achievements. An admin may already have awarded one by hand
        #    (POST /teams/{id}/achievements); keep that row rather than fail.
        already_awarded = {
            (row.team_id, row.kind): row for row in db.session.scalars(
                select(TeamAchievement).where(TeamAchievement.tournament_id == tournament_id,
                                              TeamAchievement.kind.in_(ACHIEVEMENT_FOR_PLACE.values())))
        }
        for payout in payouts:
            kind = ACHIEVEMENT_FOR_PLACE[payout["placement"].place]
            achievement = already_awarded.get((payout["team"].id, kind))
            payout["new_achievement"] = achievement is None
            if achievement is None:
                achievement = TeamAchievement(team_id=payout["team"].id, kind=kind,
                                              tournament_id=tournament_id, earned_at=now)
                db.session.add(achievement)
            payout["achievement"] = achievement
        db.session.flush()

        # 5. The events, committed with the coins (outbox): they cannot be lost
        #    if Redis is down, nor sent for a payout that rolled back.
        summary = []
        for payout in payouts:
            placement, team, coins, achievement = (payout["placement"], payout["team"], payout["coins"],
                                                   payout["achievement"])
            held = payout["held"]
            if coins is not None:
                emit("payout_received", user_id=team.captain_id, team_id=team.id, tournament_id=tournament_id,
                     place=placement.place, amount=payout["amount"], transaction_id=coins.id)
            if held is not None:
                emit("payout_held", payout_id=held.id)
            if payout["new_achievement"]:
                emit("achievement_earned", achievement_id=achievement.id)
            summary.append({"place": placement.place, "team_id": team.id, "team_name": team.name,
                            "user_id": team.captain_id, "amount": payout["amount"],
                            "status": "pending_approval" if held is not None else "paid",
                            "transaction_id": coins.id if coins else None,
                            "payout_id": held.id if held is not None else None,
                            "achievement": achievement.kind, "achievement_id": achievement.id})

        # 6. Keep what was paid with the key (answers later reruns), and commit
        #    key, coins, achievements and events together.
        claim.result = {"tournament_id": tournament_id, "payouts": summary,
                        "job_id": job.id if job else None}
        db.session.commit()
    except IntegrityError:
        # Someone else committed this key first (or, rarely, another constraint
        # failed: then the key is absent and the error is re-raised for a retry).
        db.session.rollback()
        existing = db.session.scalar(select(DedupKey).where(DedupKey.key == dedup_key))
        if existing is None:
            raise
        return {"status": "already_distributed", "dedup_key": dedup_key, "tournament_id": tournament_id,
                "payouts": (existing.result or {}).get("payouts", [])}
    except BaseException:
        db.session.rollback()
        raise

    return {"status": "distributed", "dedup_key": dedup_key, "tournament_id": tournament_id,
            "payouts": summary}



def tournament_payouts(tournament_id: int) -> dict[int, int]:
    """{team_id: coins} that the tournament's payout paid (empty until it ran), approved
    payouts included (held or rejected ones are not paid: `held_payouts`)."""
    approved = select(Payout.transaction_id).where(Payout.tournament_id == tournament_id,
                                                   Payout.transaction_id.is_not(None))
    rows = db.session.scalars(select(CoinTransaction).where(
        (CoinTransaction.dedup_key == payout_dedup_key(tournament_id)) | CoinTransaction.id.in_(approved),
        CoinTransaction.transaction_type == TRANSACTION_TYPE))
    paid: dict[int, int] = {}
    for row in rows:
        team_id = (row.meta or {}).get("team_id")
        if team_id is not None:
            paid[team_id] = paid.get(team_id, 0) + row.amount
    return paid


def held_payouts(tournament_id: int) -> dict[int, Payout]:
    """{team_id: Payout} of the tournament's payouts held for approval, and how each was decided."""
    return {p.team_id: p for p in db.session.scalars(select(Payout).where(Payout.tournament_id == tournament_id))}
