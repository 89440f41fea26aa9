"""The daily digest leaves muted items out of the count of new ones and lists them under "Muted"."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import time_machine

from deltacrown.notifications.digests import send_daily_digest
from deltacrown.notifications.service import NotificationService

from .conftest import new_match


def test_digest_counts_muted_items_apart(api, cup, run_jobs, smtp_server):
    ann = api.users.ids["ann"]
    today = datetime.now(timezone.utc).date()
    api.post("/mutes", "ann", {"team_id": cup["red"], "until": None}, expect=201)
    match = new_match(api, cup)
    api.post(f"/matches/{match}/result", "admin", {"score_a": 1, "score_b": 0}, expect=200)
    run_jobs()
    with api.app.app_context():
        NotificationService().notify([ann], "announcement", "Season two starts", "Sign up now.", None, "test:news")
    run_jobs()
    smtp_server.clear()
    tomorrow = today + timedelta(days=1)
    with time_machine.travel(datetime.combine(tomorrow, time(8, 5), tzinfo=timezone.utc), tick=True):
        with api.app.app_context():
            send_daily_digest()
    [digest] = [m for m in smtp_server.messages if "ann@example.com" in m.rcpt_tos]
    assert digest.subject.endswith(": 1 update")  # only the announcement is new
    text = digest.text
    assert "Season two starts" in text
    muted_part = text.split("Muted (2)", 1)[1]  # match scheduled + match result, both about Red
    assert "Red 1 : 0 Blue" in muted_part and "Season two starts" not in muted_part
