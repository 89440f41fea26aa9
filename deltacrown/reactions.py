"""What each outbox event causes: the one table from event kind to reactions.

The domains only emit (outbox/events.py declares the kinds); this table says what
follows, and `init_app` hands it to the dispatcher (outbox/dispatch.py), whose
event jobs (`handle_ready_events`, `handle_events`) run it for every event. A match result, for instance:

- match_result: its teams' members are notified (notifications/types.py says who
  and what, the fan-out sends it on each one's channels), the match's Discord card
  is edited and its reminder job cancelled;
- match_rescheduled: the members' match notification is rewritten with the new time
  (notifications/match_updates.py), the card edited, the reminder job moved;
- tournament_completed: the wrap-up job recomputes the rankings and pays the podium,
  which emit ranking_changed, payout_received and achievement_earned, each notified.

Every declared kind has an entry; an empty one would mean "nothing, on purpose".
"""
from __future__ import annotations

from functools import partial

from .economy.jobs import wrap_up_tournament
from .notifications.match_updates import notify_rescheduled, queue_standings_card
from .notifications.reminders import sync_reminder_job, sync_reminder_jobs_of_tournament
from .notifications.service import notify_for_event
from .outbox.dispatch import install_reactions


def notify(type_name: str):
    """A reaction: notify of the event as a notification of this type (types.py)."""
    return partial(notify_for_event, type_name)


def follow_reminder(event) -> int:
    """The match's reminder job follows its row (moved, cancelled; tournaments/reminders.py)."""
    sync_reminder_job(event.payload["match_id"])
    return 0


def cancel_tournament_reminders(event) -> int:
    sync_reminder_jobs_of_tournament(event.payload["tournament_id"])
    return 0


def start_wrap_up(event) -> int:
    # Queued, so that completing a tournament does not wait for rankings and payouts.
    wrap_up_tournament.enqueue(event.payload["tournament_id"])
    return 0


REACTIONS = {
    "invite_sent": (notify("invite_sent"),),
    "invite_accepted": (notify("invite_accepted"),),
    "roster_changed": (notify("roster_changed"),),
    "sponsor_approved": (notify("sponsor_approved"),),
    "promotion_started": (notify("promotion_started"),),
    "achievement_earned": (notify("achievement_earned"),),
    "tournament_registered": (notify("tournament_registered"),),
    "match_scheduled": (notify("match_scheduled"), follow_reminder),
    "match_rescheduled": (notify_rescheduled, follow_reminder),
    "match_result": (notify("match_result"), follow_reminder),
    "bracket_ready": (notify("bracket_ready"),),
    "tournament_completed": (start_wrap_up, cancel_tournament_reminders),
    "standings_updated": (queue_standings_card,),
    "ranking_changed": (notify("ranking_changed"),),
    "payout_received": (notify("payout_received"),),
    "payout_held": (notify("payout_awaiting_approval"),),
    "payout_rejected": (notify("payout_rejected"),),
    "webhook_disabled": (notify("webhook_disabled"),),
    "api_token_replaced": (notify("api_token_replaced"),),
}


def init_app(app):
    install_reactions(REACTIONS)
