from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from deltacrown.dedup import DedupKey
from deltacrown.extensions import db
from deltacrown.models import Notification, NotificationPreference, Team, TeamMembership, User
from deltacrown.notifications.types import NOTIFICATION_TYPES


def test_preference_defaults_come_from_the_type_registry(app, users):
    uid = users.create("pat")
    with app.app_context():
        pref = NotificationPreference.get_or_create_for_user(db.session.get(User, uid))
        for name, ntype in NOTIFICATION_TYPES.items():
            assert pref.get_channels_for_type(name) == list(ntype.default_channels)
        assert pref.digest_time.strftime("%H:%M") == "08:00"


def test_opt_outs_win_over_chosen_channels(app, users):
    uid = users.create("quinn")
    with app.app_context():
        pref = NotificationPreference.get_or_create_for_user(db.session.get(User, uid))
        pref.channels = {"match_result": ["in_app", "email", "discord"]}
        pref.opt_out_email = True
        db.session.commit()
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == uid))
        assert pref.get_channels_for_type("match_result") == ["in_app", "discord"]
        pref.opt_out_in_app = True
        assert pref.get_channels_for_type("match_result") == ["discord"]


def test_get_or_create_returns_the_same_row(app, users):
    uid = users.create("ray")
    with app.app_context():
        user = db.session.get(User, uid)
        first = NotificationPreference.get_or_create_for_user(user)
        db.session.commit()
        assert NotificationPreference.get_or_create_for_user(user).id == first.id


def test_membership_is_unique_per_team_and_user(app, users):
    uid = users.create("sam")
    with app.app_context():
        team = Team(name="Sharks", captain_id=uid)
        db.session.add(team)
        db.session.flush()
        db.session.add(TeamMembership(team_id=team.id, user_id=uid, role="captain"))
        db.session.commit()
        db.session.add(TeamMembership(team_id=team.id, user_id=uid, role="member"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_dedup_key_is_unique(app):
    with app.app_context():
        db.session.add(DedupKey(key="k" * 64, task="payout"))
        db.session.commit()
        db.session.add(DedupKey(key="k" * 64, task="payout"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_timestamps_come_back_as_utc(app, users):
    uid = users.create("tess")
    with app.app_context():
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        db.session.add(Notification(user_id=uid, type="announcement", title="t", body="", created_at=when))
        db.session.commit()
        db.session.expire_all()
        stored = db.session.scalar(select(Notification.created_at))
        assert stored == when and stored.utcoffset().total_seconds() == 0
