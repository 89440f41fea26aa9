"""Time-driven state changes of teams' invites, sponsors and promotions.

Each function is set-based: a constant number of statements whatever the number
of rows, one transaction, and safe to run twice or from two workers at once
(the WHERE clause on the old status makes a row change state once; on
PostgreSQL a concurrent UPDATE waits for the row lock, then re-checks it).
Called alike by the recurring jobs (teams/jobs.py) and the CLI (teams/cli.py).
"""
from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..outbox.services import emit
from ..timeutil import utcnow
from .models import TeamInvite, TeamPromotion, TeamSponsor
from .services import invites_live_since


def _transition(model, current: str, due, **values):
    """The UPDATE that gives `values` to the rows of `model` still `current` (status) for
    which `due` holds (the status check makes a row change once, however many runs race)."""
    return (update(model).where(model.status == current, due).values(**values)
            .execution_options(synchronize_session=False))


def clean_expired_invites(now=None) -> dict:
    """Pending invites older than INVITE_EXPIRY_DAYS become expired (responded_at = now)."""
    now = now or utcnow()
    cutoff = invites_live_since(now)
    expired = db.session.execute(_transition(TeamInvite, "pending", TeamInvite.created_at < cutoff,
                                             status="expired", responded_at=now)).rowcount
    db.session.commit()
    return {"expired": expired}


def expire_sponsors(now=None) -> dict:
    """Approved sponsors whose expires_at has passed become expired."""
    now = now or utcnow()
    expired = db.session.execute(
        _transition(TeamSponsor, "approved", TeamSponsor.expires_at <= now, status="expired")).rowcount
    db.session.commit()
    return {"expired": expired}


def process_scheduled_promotions(now=None) -> dict:
    """Start scheduled promotions whose start has come, end active ones past their end.

    A started promotion emits `promotion_started {promotion_id}` in the same
    transaction (UPDATE ... RETURNING gives exactly the rows this run changed,
    so a concurrent run cannot emit the same event again). A scheduled promotion
    whose end has already passed (e.g. the job did not run for its whole
    window) goes straight to expired, without announcing a start.
    """
    now = now or utcnow()
    missed = db.session.execute(
        _transition(TeamPromotion, "scheduled", TeamPromotion.ends_at <= now, status="expired")).rowcount
    started_ids = db.session.scalars(
        _transition(TeamPromotion, "scheduled", TeamPromotion.starts_at <= now, status="active")
        .returning(TeamPromotion.id)).all()
    ended = db.session.execute(
        _transition(TeamPromotion, "active", TeamPromotion.ends_at <= now, status="expired")).rowcount
    for promotion_id in sorted(started_ids):
        emit("promotion_started", promotion_id=promotion_id)
    db.session.commit()
    return {"started": len(started_ids), "expired": ended + missed}
