"""The seed's delivery targets, measured: email bounce rate under 5 % and Discord webhook
success over 98 %, over the last 24 hours and 7 days, and per day for the trend.

Counted from the database (any number of web processes answer the same):
- email sent: email deliveries that went out (`sent`, and `bounced`: accepted or refused
  by the receiving server, either way an email sent to that address) plus daily digests sent;
- bounced: hard bounces in the bounce/complaint ledger (email_events), once per report,
  whether refused at send time or reported later; complained: complaints in it;
- suppressed: email deliveries not sent because the address was on the suppression list;
- bounce rate: bounced / sent; complaint rate: complained / sent;
- Discord success: sent / (sent + failed + bounced) of Discord deliveries (skipped ones
  were never tried).

Three statements whatever the windows: one per table, each summing CASE expressions over
the rows of the last 7 days (deliveries and email_events have a created_at index).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select

from ..extensions import db
from ..notifications.models import Delivery, EmailEvent, NotificationDigest
from ..notifications.types import DISCORD, EMAIL
from ..timeutil import utcnow

BOUNCE_RATE_ALERT = 0.05  # the seed: OK under 5 %, alert at or over
DISCORD_SUCCESS_OK = 0.98  # the seed: OK over 98 %
# Not a seed target: the line mailbox providers hold bulk senders to (0.3 % of mail reported as spam).
COMPLAINT_RATE_ALERT = 0.003
DAYS = 7


@dataclass
class Window:
    label: str  # "24 hours", "7 days", or a day ("2026-12-01")
    email_sent: int = 0
    bounced: int = 0
    complained: int = 0
    suppressed: int = 0
    discord_sent: int = 0
    discord_failed: int = 0

    @property
    def bounce_rate(self) -> float | None:
        return min(1.0, self.bounced / max(self.email_sent, self.bounced)) if self.bounced or self.email_sent else None

    @property
    def complaint_rate(self) -> float | None:
        return min(1.0, self.complained / self.email_sent) if self.email_sent else None

    @property
    def discord_success(self) -> float | None:
        tried = self.discord_sent + self.discord_failed
        return self.discord_sent / tried if tried else None

    @property
    def bounce_level(self) -> str | None:
        rate = self.bounce_rate
        return None if rate is None else "alert" if rate >= BOUNCE_RATE_ALERT else "ok"

    @property
    def complaint_level(self) -> str | None:
        rate = self.complaint_rate
        return None if rate is None else "alert" if rate >= COMPLAINT_RATE_ALERT else "ok"

    @property
    def discord_level(self) -> str | None:
        rate = self.discord_success
        return None if rate is None else "ok" if rate > DISCORD_SUCCESS_OK else "alert"


@dataclass
class DeliveryRates:
    windows: list[Window]  # last 24 hours, last 7 days
    days: list[Window]  # the last 7 UTC days, oldest first (today so far last)


def _count(condition):
    return func.sum(case((condition, 1), else_=0))


def delivery_rates(now: datetime | None = None) -> DeliveryRates:
    now = now or utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    ranges = [(now - timedelta(hours=24), now), (now - timedelta(days=7), now)] + [
        (start, start + timedelta(days=1)) for start in starts]
    since = min(start for start, _ in ranges)
    windows = [Window("24 hours"), Window("7 days")] + [Window(start.date().isoformat()) for start in starts]

    def in_range(column, start, end):
        return and_(column >= start, column < end)

    D = Delivery
    email_out = and_(D.channel == EMAIL, D.status.in_(("sent", "bounced")))
    columns = []
    for start, end in ranges:
        when = in_range(D.created_at, start, end)
        columns += [_count(and_(when, email_out)), _count(and_(when, D.channel == EMAIL, D.status == "suppressed")),
                    _count(and_(when, D.channel == DISCORD, D.status == "sent")),
                    _count(and_(when, D.channel == DISCORD, D.status.in_(("failed", "bounced"))))]
    row = db.session.execute(select(*columns).where(D.created_at >= since)).one()
    for n, window in enumerate(windows):
        sent, suppressed, discord_sent, discord_failed = (int(v or 0) for v in row[4 * n:4 * n + 4])
        window.email_sent += sent
        window.suppressed += suppressed
        window.discord_sent += discord_sent
        window.discord_failed += discord_failed

    G = NotificationDigest
    row = db.session.execute(select(*[_count(in_range(G.sent_at, start, end)) for start, end in ranges])
                             .where(G.sent_at >= since)).one()
    for window, digests in zip(windows, row):
        window.email_sent += int(digests or 0)

    E = EmailEvent
    columns = []
    for start, end in ranges:
        when = in_range(E.created_at, start, end)
        columns += [_count(and_(when, E.kind == "bounce", E.permanent.is_(True))), _count(and_(when, E.kind == "complaint"))]
    row = db.session.execute(select(*columns).where(E.created_at >= since)).one()
    for n, window in enumerate(windows):
        window.bounced, window.complained = int(row[2 * n] or 0), int(row[2 * n + 1] or 0)
    return DeliveryRates(windows=windows[:2], days=windows[2:])
