"""Named moments inside long jobs, sent as a blinker signal that anyone may listen to.

`checkpoint.send(name)` marks a point where a job has written part of its work
and not the rest. With no receiver connected (production connects none) it does
nothing. The crash tests connect one that stops the process there, so a SIGKILL
lands at that exact moment (tests/support/pausing.py).

Points (where, and what holds there):
- "payout:after_coins" (economy/payouts.py): the coin rows are flushed, not
  committed; a kill here must leave no coins at all.
- "digest:after_claim" (notifications/digests.py): a chunk's digest claims are
  committed, no email sent yet; the retry must send each digest once.
- "announcement:after_chunk" (notifications/announcements.py): the first chunk
  of recipients is committed, the rest not written; the retry must finish the
  others and not write the first chunk's again.
"""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

checkpoint = _signals.signal("checkpoint", doc="Sent with the point's name as sender; see the module docstring.")
