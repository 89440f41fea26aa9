"""Coins: one row per coin movement."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
