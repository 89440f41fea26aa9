"""The transactional outbox: events written in the same transaction as the change."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import UTCDateTime, utcnow


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"
    # The sweep looks for unrelayed events, oldest first; an event job for the next unhandled ones.
    __table_args__ = (Index("ix_outbox_events_relayed_at_id", "relayed_at", "id"),
                      Index("ix_outbox_events_unhandled", "id", postgresql_where=text("handled_at IS NULL"),
                            sqlite_where=text("handled_at IS NULL")))

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
