"""Blinker signals a lower layer sends and a higher one (or a test) listens to.

`user_created.send(user)` is sent by accounts when a new user is flushed and not yet
committed; receivers add their rows for that user to the same transaction (the
notifications part connects one in its `init_app` that creates the default
preferences), so the user and those rows are committed together or not at all.

`checkpoint.send(name)` marks a point where a job has written part of its work
and not the rest. With no receiver connected (production connects none) it does
nothing. The crash tests connect one that stops the process there, so a SIGKILL
lands at that exact moment (tests/support/pausing.py).

Points (where, and what holds there):
- "payout:after_coins" (economy/payouts.py): the coin rows are flushed, not
  committed; a kill here must leave no coins at all.
- "payout_approval:after_coins" (economy/approvals.py): an approval's decision key
  and coin row are flushed, not committed; a kill here must leave the payout
  pending with no coins, and the next approval pays it once.
- "digest:after_claim" (notifications/digests.py): a chunk's digest claims are
  committed, no email sent yet; the retry must send each digest once.
- "announcement:after_chunk" (notifications/announcements.py): the first chunk
  of recipients is committed, the rest not written; the retry must finish the
  others and not write the first chunk's again.
- "reminder:after_claim" / "reminder:after_commit" (notifications/reminders.py): a
  match reminder claimed and its notifications written, before / after the commit;
  the retry must send it once.
- "held:before_send" (notifications/delivery_jobs.py: send_held): a user's due held
  sends (quiet hours, email delay) are read, none sent; the retry must send each once.
- "event:before_mark" (outbox/dispatch.py: `_react_and_mark`, in every event job, run inside
  worker.py's own process): an event's reactions are done and their rows flushed, the event not yet
  marked handled; the retry must write each notification once.
- "delivery:before_send" (notifications/deliveries.py: send_delivery): a delivery is
  leased and claimed, nothing sent; the retry of the same job must send it once,
  without waiting out the dead run's lease.
"""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

checkpoint = _signals.signal("checkpoint", doc="Sent with the point's name as sender; see the module docstring.")
user_created = _signals.signal("user_created", doc="Sent with the new, flushed User as sender.")
