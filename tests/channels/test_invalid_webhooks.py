"""A webhook Discord calls invalid is not posted to again: Discord bans an address after
10,000 invalid requests (401, 403, 429) in 10 minutes, so a webhook whose token was
reset (401) must not be tried once per notification, for ever."""
from __future__ import annotations

from sqlalchemy import select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.models import Notification
from deltacrown.notifications.models import NotificationPreference
from deltacrown.notifications.preferences import update_preferences


def test_a_401_switches_the_webhook_off_and_the_owner_is_told(app, users, make, enqueue, run_jobs, discord_server):
    app.config["DELIVERY_RETRY_INTERVALS"] = []
    uid = users.create("ann")
    url = discord_server.webhook_url(88)
    with app.app_context():
        update_preferences(db.session.get(User, uid), {"discord_webhook_url": url,
                                                       "channels": {"match_result": ["in_app", "discord"]}}, "api")
    discord_server.fail_next(88, status=401, times=10)
    first = make.delivery("discord", f"user:{uid}", notification_id=make.notification(uid), user_id=uid)
    enqueue(first)
    run_jobs()
    second = make.delivery("discord", f"user:{uid}", notification_id=make.notification(uid), user_id=uid)
    enqueue(second)
    run_jobs()
    assert len(discord_server.arrivals(88)) == 1
    assert "401" in make.get(first).last_error and make.get(second).status == "failed"
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == uid))
        assert pref.discord_webhook_url is None
        titles = db.session.scalars(select(Notification.title).where(Notification.type == "webhook_disabled")).all()
        assert titles == ["Your Discord webhook was switched off"]
