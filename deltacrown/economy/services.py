"""Coin balances and history (payouts themselves are the automation part's)."""
from __future__ import annotations

from sqlalchemy import func, select

from ..api import keyset_page
from ..extensions import db
from .models import CoinTransaction


def balance(user_id: int) -> int:
    return int(db.session.scalar(select(func.coalesce(func.sum(CoinTransaction.amount), 0))
                                 .where(CoinTransaction.user_id == user_id)))


def history_page(user_id: int, cursor: str | None, limit: int):
    """(transactions newest first, next_cursor)."""
    return keyset_page(select(CoinTransaction).where(CoinTransaction.user_id == user_id),
                       CoinTransaction.id, cursor, limit)
