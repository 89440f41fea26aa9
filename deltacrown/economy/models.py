"""Coins: one row per coin movement; payouts held for approval and their decisions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..dbutil import sql_in
from ..extensions import db
from ..timeutil import UTCDateTime, utcnow


class CoinTransaction(db.Model):
    """One coin movement. Amounts are integers; the balance is their sum."""

    __tablename__ = "coin_transactions"
    __table_args__ = (Index("ix_coin_transactions_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column()
    transaction_type: Mapped[str] = mapped_column(String(32))
    # `metadata` is reserved by SQLAlchemy's declarative base, hence the attribute name.
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    # Copied out of the metadata so ops can check "no key pays twice" with an index.
    dedup_key: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user = relationship("User")


PAYOUT_STATUSES = ("pending_approval", "paid", "rejected")


class Payout(db.Model):
    """A tournament payout held for a second admin (PAYOUT_APPROVAL_THRESHOLD), and how it was
    decided: the audit trail, kept forever (see economy/approvals.py).

    Written by the payout run (economy/payouts.py) in the same transaction as the coins of the
    smaller places, with status "pending_approval" and no coins. Approving it writes its
    CoinTransaction (`transaction_id`) and sets "paid"; rejecting sets "rejected" with the
    reason. Who and when: `completed_by_id` (the admin who completed the tournament, the first
    pair of eyes), `decided_by_id` / `decided_at` (the second), `self_approved` when
    PAYOUT_APPROVAL_ALLOW_SELF let the first approve it too.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint(sql_in("status", PAYOUT_STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("tournament_id", "place"),
        Index("ix_payouts_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tournament_id: Mapped[int] = mapped_column(ForeignKey("tournaments.id"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # the captain when it was held: who is paid
    place: Mapped[int] = mapped_column()
    amount: Mapped[int] = mapped_column()
    threshold: Mapped[int] = mapped_column()  # PAYOUT_APPROVAL_THRESHOLD in force when it was held
    status: Mapped[str] = mapped_column(String(24), default="pending_approval")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    self_approved: Mapped[bool] = mapped_column(default=False)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("coin_transactions.id"))

    tournament = relationship("Tournament")
    team = relationship("Team")
    user = relationship("User", foreign_keys=[user_id])
    completed_by = relationship("User", foreign_keys=[completed_by_id])
    decided_by = relationship("User", foreign_keys=[decided_by_id])
