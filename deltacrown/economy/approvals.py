"""Payouts held for a second admin: approve (pays, exactly once) or reject (with a reason).

How a payout comes to be held is economy/payouts.py ("Large payouts wait for a second
admin"): with PAYOUT_APPROVAL_THRESHOLD set, a place paying at least that many coins is
written as a `Payout` row with status "pending_approval" and no coins. From here:

    pending_approval --approve--> paid       (coins to the captain it was held for,
                                              `payout_received` to them)
    pending_approval --reject---> rejected   (no coins, `payout_rejected` with the reason
                                              to the team's captain)

Four eyes: the admin who completed the tournament (`Tournament.completed_by_id`, copied
to `Payout.completed_by_id` when it was held) may not approve its payouts (Forbidden,
explained). On a platform with a single admin, PAYOUT_APPROVAL_ALLOW_SELF=true lifts
that rule; such an approval is marked `self_approved` in the row and in the coins'
metadata. Any admin may reject (stopping money needs no second person). A payout whose
completing admin is unknown (completed before that was recorded) may be approved by any
admin; its audit trail shows "completed by: unknown".

Exactly once, by the rule of payouts.py: a decision inserts the payout's decision key
(`decision_dedup_key(payout_id)`) into `dedup_keys` in the SAME transaction as the coins,
the status change and the event. Two approvals racing (or an approval racing a
rejection, from any number of processes): the second INSERT of the key waits on the
unique index until the first commits, then fails; it rolls back everything and answers
Conflict (409, "already decided"). An approval killed before its commit leaves nothing
(no key, no coins, still pending); approving again pays it, once. The conditional UPDATE
(`status = 'pending_approval'`) is a second guard, not the first. The status read before
the claim only gives a clear 409 early; it is not what makes a decision happen once.

Every decision keeps who, when and why in the row (`decided_by_id`, `decided_at`,
`reason`); the coins' metadata repeats it (payout_id, approved_by, completed_by,
self_approved). The ops dashboard lists pending payouts (flagged after 24 hours) and
the trail of decided ones (ops/views.py); the API is economy/api.py.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from rq import get_current_job
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from ..api import keyset_page
from ..dbutil import get_row
from ..dedup import DedupKey, generate_dedup_key
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..extensions import db
from ..outbox.services import emit
from ..signals import checkpoint
from ..timeutil import utcnow
from .models import PAYOUT_STATUSES, CoinTransaction, Payout
from .payouts import TRANSACTION_TYPE

TASK_NAME = "decide_payout"
PENDING = "pending_approval"
REASON_MAX_LENGTH = 500
# A payout still pending after this long is flagged on the ops dashboard.
PENDING_FLAG_AFTER = timedelta(hours=24)


def decision_dedup_key(payout_id: int) -> str:
    """The one key a held payout's decision (approval or rejection) may ever commit under."""
    return generate_dedup_key(TASK_NAME, payout_id=payout_id)


def approval_settings() -> dict:
    """What is in force: {threshold: coins or None (off), allow_self: bool}."""
    return {"threshold": current_app.config.get("PAYOUT_APPROVAL_THRESHOLD"),
            "allow_self": bool(current_app.config.get("PAYOUT_APPROVAL_ALLOW_SELF"))}


# --- reading ---------------------------------------------------------------------

def list_payouts(status: str | None, cursor: str | None, limit: int):
    """(payouts newest first, next_cursor), of one status or all."""
    stmt = select(Payout)
    if status is not None:
        if status not in PAYOUT_STATUSES:
            raise InvalidInput(f"status: one of {', '.join(PAYOUT_STATUSES)}",
                               fields={"status": f"one of {', '.join(PAYOUT_STATUSES)}"})
        stmt = stmt.where(Payout.status == status)
    return keyset_page(stmt, Payout.id, cursor, limit)


def _with_people():
    return (joinedload(Payout.tournament), joinedload(Payout.team), joinedload(Payout.user),
            joinedload(Payout.completed_by), joinedload(Payout.decided_by))


def pending_payouts(limit: int = 100) -> list[Payout]:
    """Payouts awaiting approval, oldest first (the longest waiting on top)."""
    return list(db.session.scalars(select(Payout).options(*_with_people()).where(Payout.status == PENDING)
                                   .order_by(Payout.id).limit(limit)))


def decided_payouts(limit: int = 20) -> list[Payout]:
    """The most recently decided payouts, newest decision first: the audit trail."""
    return list(db.session.scalars(select(Payout).options(*_with_people()).where(Payout.status != PENDING)
                                   .order_by(Payout.decided_at.desc(), Payout.id.desc()).limit(limit)))


def is_overdue(payout: Payout, now=None) -> bool:
    """Pending for longer than PENDING_FLAG_AFTER."""
    return payout.status == PENDING and (now or utcnow()) - payout.created_at > PENDING_FLAG_AFTER


# --- deciding --------------------------------------------------------------------

def _load(payout_id: int) -> Payout:
    payout = get_row(Payout, payout_id)
    if payout is None:
        raise NotFound(f"payout {payout_id} does not exist")
    return payout


def _already_decided(payout: Payout) -> Conflict:
    who = payout.decided_by.username if payout.decided_by else "an admin"
    when = payout.decided_at.isoformat() if payout.decided_at else "an unknown time"
    verb = "approved and paid" if payout.status == "paid" else "rejected"
    return Conflict(f"payout {payout.id} was already {verb} by {who} at {when}; a payout is decided only once")


def _check_decider(payout: Payout, actor) -> None:
    if not getattr(actor, "is_admin", False):
        raise Forbidden("Only admins may decide payouts.")
    if payout.status != PENDING:
        raise _already_decided(payout)


def _self_approval(payout: Payout, actor) -> bool:
    """True when `actor` completed the tournament and PAYOUT_APPROVAL_ALLOW_SELF lets them
    approve anyway; Forbidden (four eyes) when it does not."""
    if payout.completed_by_id is None or payout.completed_by_id != actor.id:
        return False
    if approval_settings()["allow_self"]:
        return True
    raise Forbidden(f"Four-eyes rule: you completed tournament {payout.tournament_id}, so its payouts need "
                    "another admin's approval. Ask a second admin to approve payout "
                    f"{payout.id}. (A platform with a single admin can set PAYOUT_APPROVAL_ALLOW_SELF=true; "
                    "the audit trail then marks the approval as self-approved.)")


def _decide(payout: Payout, actor, values: dict, pay: bool) -> Payout:
    """Claim the decision key, then (for an approval) write the coins, then change the
    status, emit, commit: all in one transaction. See the module docstring."""
    payout_id = payout.id
    key = decision_dedup_key(payout_id)
    now = utcnow()
    job = get_current_job()  # None in a request
    try:
        # The exactly-once guard: a racing decision blocks here until this one ends.
        claim = DedupKey(key=key, task=TASK_NAME, created_at=now)
        db.session.add(claim)
        db.session.flush()

        coins = None
        if pay:
            coins = CoinTransaction(
                user_id=payout.user_id, amount=payout.amount, transaction_type=TRANSACTION_TYPE, dedup_key=key,
                created_at=now,
                meta={"tournament_id": payout.tournament_id, "place": payout.place, "team_id": payout.team_id,
                      "dedup_key": key, "timestamp": now.isoformat(), "job_id": job.id if job else None,
                      "payout_id": payout_id, "approved_by": actor.id, "completed_by": payout.completed_by_id,
                      "self_approved": values["self_approved"]})
            db.session.add(coins)
            db.session.flush()
            checkpoint.send("payout_approval:after_coins")  # coins flushed, not committed
            values = {**values, "transaction_id": coins.id}

        changed = db.session.execute(
            update(Payout).where(Payout.id == payout_id, Payout.status == PENDING)
            .values(decided_by_id=actor.id, decided_at=now, **values)
            .execution_options(synchronize_session=False)).rowcount
        if changed != 1:  # decided by other means than this key (never by this module): refuse
            db.session.rollback()
            raise _already_decided(_load(payout_id))

        if coins is not None:
            emit("payout_received", user_id=payout.user_id, team_id=payout.team_id,
                 tournament_id=payout.tournament_id, place=payout.place, amount=payout.amount,
                 transaction_id=coins.id)
        else:
            emit("payout_rejected", payout_id=payout_id)
        claim.result = {"payout_id": payout_id, "status": values["status"], "decided_by": actor.id,
                        "transaction_id": coins.id if coins is not None else None}
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if db.session.scalar(select(DedupKey.id).where(DedupKey.key == key)) is None:
            raise  # another constraint failed: not a decision made elsewhere
        raise _already_decided(_load(payout_id)) from None
    except BaseException:
        db.session.rollback()
        raise
    payout = _load(payout_id)
    db.session.refresh(payout)
    return payout


def approve_payout(payout_id: int, actor) -> Payout:
    """Pay a held payout, once: coins to the captain it was held for, `payout_received`.

    NotFound (unknown), Conflict (already decided), Forbidden (not an admin, or the
    admin who completed the tournament while PAYOUT_APPROVAL_ALLOW_SELF is off).
    """
    payout = _load(payout_id)
    _check_decider(payout, actor)
    self_approved = _self_approval(payout, actor)
    return _decide(payout, actor, {"status": "paid", "self_approved": self_approved}, pay=True)


def clean_reason(reason) -> str:
    """The reason as stored: stripped, 1 to 500 characters; InvalidInput naming `reason`."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidInput("reason: say why the payout is rejected (the team's captain is told)",
                           fields={"reason": "must not be blank"})
    if len(text) > REASON_MAX_LENGTH or "\x00" in text:
        raise InvalidInput(f"reason: at most {REASON_MAX_LENGTH} characters, no NUL characters",
                           fields={"reason": f"at most {REASON_MAX_LENGTH} characters, no NUL characters"})
    return text


def reject_payout(payout_id: int, actor, reason: str) -> Payout:
    """Refuse a held payout with a reason: no coins; the team's captain is told why.

    InvalidInput (blank or too long reason, checked first), NotFound, Conflict (already
    decided), Forbidden (not an admin).
    """
    text = clean_reason(reason)
    payout = _load(payout_id)
    _check_decider(payout, actor)
    return _decide(payout, actor, {"status": "rejected", "reason": text}, pay=False)
