"""Dedup keys: one stable name for one piece of one-time work, and the table that claims it.

`generate_dedup_key("distribute_tournament_payouts", tournament_id=7)` is the
SHA-256 (hex, 64 chars) of a canonical JSON form of the task name and its
arguments: keys sorted, no whitespace. The same arguments in any order give the
same key, so a retry, a rerun from the CLI and a racing worker all compute the
same key, and the unique `dedup_keys.key` column lets only one of them commit.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .timeutil import UTCDateTime, utcnow


def canonical_json(task_name: str, **kwargs) -> str:
    """The exact text that is hashed. Values must be plain JSON (ids, strings, numbers);
    anything else raises TypeError rather than being stringified ambiguously."""
    return json.dumps({"task": task_name, "args": kwargs}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def generate_dedup_key(task_name: str, **kwargs) -> str:
    return hashlib.sha256(canonical_json(task_name, **kwargs).encode("ascii")).hexdigest()


class DedupKey(db.Model):
    """A row per one-time piece of work; the unique key is what makes it one-time.

    Insert it in the same transaction as the work: a second insert of the same key
    fails with IntegrityError and the whole second attempt rolls back.
    """

    __tablename__ = "dedup_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    task: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    result: Mapped[dict | None] = mapped_column(JSON)
