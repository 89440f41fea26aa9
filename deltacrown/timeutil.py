"""Time helpers: everything is stored in UTC with a time zone, and shown in a person's zone."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


UTC_ZONE = ZoneInfo("UTC")


def first_zone(*names: str | None) -> ZoneInfo:
    """The first of these IANA zone names that exists, else UTC.

    The one rule for a person's zone, in the order the caller gives (see
    `notifications.preferences.user_zone`): a blank or unknown name (a zone
    removed from the tz database, a bad stored value) is passed over, never fatal.
    """
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC_ZONE


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL keeps the offset (timestamptz); SQLite drops it, so values read
    back from SQLite are re-tagged as UTC here, and naive values are refused on
    the way in rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
