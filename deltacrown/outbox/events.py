"""The outbox event kinds: every kind the code emits, declared once with its payload keys.

`emit()` refuses a kind that is not declared here or a payload with other keys (a
programming error), so an event's shape is read in one place. What each kind causes
is not declared here: the reactions (deltacrown/reactions.py) register that with the
dispatcher (outbox/dispatch.py) at start.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventKind:
    name: str
    payload: tuple[str, ...]  # the keys an event of this kind carries, all of them, always


_KINDS = (
    EventKind("invite_sent", payload=("invite_id",)),
    EventKind("invite_accepted", payload=("invite_id",)),
    EventKind("roster_changed", payload=("team_id", "user_id", "action", "actor_id")),
    EventKind("sponsor_approved", payload=("sponsor_id",)),
    EventKind("promotion_started", payload=("promotion_id",)),
    EventKind("achievement_earned", payload=("achievement_id",)),
    EventKind("tournament_registered", payload=("registration_id",)),
    EventKind("match_scheduled", payload=("match_id",)),
    EventKind("match_rescheduled", payload=("match_id", "previous_at", "scheduled_at")),
    EventKind("match_result", payload=("match_id",)),
    # A rankings recompute ran (tournaments/rankings.py): the tournament's standings card follows.
    EventKind("standings_updated", payload=("tournament_id",)),
    EventKind("bracket_ready", payload=("tournament_id",)),
    EventKind("tournament_completed", payload=("tournament_id",)),
    # Written by the ranking recompute's INSERT .. SELECT (tournaments/rankings.py), not by emit().
    EventKind("ranking_changed", payload=("team_id", "old_rank", "new_rank")),
    # A Discord webhook that no longer exists was switched off (notifications/deliveries.py).
    EventKind("webhook_disabled", payload=("user_id", "team_id", "url_digest")),
    # A user's API token was replaced (accounts/services.py: rotate_api_token): an account-security notice.
    EventKind("api_token_replaced", payload=("user_id",)),
    EventKind("payout_received",
              payload=("user_id", "team_id", "tournament_id", "place", "amount", "transaction_id")),
    # A payout at or above PAYOUT_APPROVAL_THRESHOLD waits for a second admin; then it is
    # rejected (with a reason) or paid (payout_received). economy/payouts.py, economy/approvals.py.
    EventKind("payout_held", payload=("payout_id",)),
    EventKind("payout_rejected", payload=("payout_id",)),
)

EVENT_KINDS: dict[str, EventKind] = {kind.name: kind for kind in _KINDS}


def check_event(name: str, payload: dict) -> None:
    """Raise ValueError unless `name` is a declared kind and `payload` has exactly its keys."""
    kind = EVENT_KINDS.get(name)
    if kind is None:
        raise ValueError(f"undeclared outbox event kind {name!r} (declare it in outbox/events.py)")
    missing, extra = set(kind.payload) - set(payload), set(payload) - set(kind.payload)
    if missing or extra:
        raise ValueError(f"outbox event {name!r}: payload keys missing {sorted(missing)}, "
                         f"unexpected {sorted(extra)}")
