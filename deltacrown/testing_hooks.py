"""Test-only pause points: let a crash test kill a process at an exact moment.

A process started with DELTACROWN_TEST_PAUSE_AT=<name> (and optionally
DELTACROWN_TEST_PAUSE_DIR=<dir>, default the temp dir) creates
<dir>/<name>.reached on reaching the point of that name, then waits for
<dir>/<name>.release (at most `timeout` seconds, then it raises rather than go
on). ":" in names becomes "-" in file names. Without the variable, or with
another name in it — in production — `pause_point` returns at once.

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

import os
import tempfile
import time
from pathlib import Path

PAUSE_AT_ENV = "DELTACROWN_TEST_PAUSE_AT"
PAUSE_DIR_ENV = "DELTACROWN_TEST_PAUSE_DIR"


def pause_file(name: str, suffix: str, folder: str | Path | None = None) -> Path:
    folder = Path(folder or os.environ.get(PAUSE_DIR_ENV) or tempfile.gettempdir())
    return folder / f"{name.replace(':', '-')}.{suffix}"


def pause_point(name: str, timeout: float = 300.0) -> None:
    if os.environ.get(PAUSE_AT_ENV) != name:
        return
    pause_file(name, "reached").write_text(str(os.getpid()))
    release = pause_file(name, "release")
    deadline = time.monotonic() + timeout
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"test pause point {name!r} was never released")
        time.sleep(0.05)
