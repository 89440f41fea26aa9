"""The declarations behind the pipeline: event kinds (outbox/events.py), the reactions
table (reactions.py) and the notification type registry (notifications/types.py)."""
from __future__ import annotations

import pytest

from deltacrown.extensions import db
from deltacrown.models import Notification, OutboxEvent, User
from deltacrown.notifications.composers import Audience
from deltacrown.notifications.service import NotificationService
from deltacrown.notifications.types import NOTIFICATION_TYPES
from deltacrown.outbox.dispatch import install_reactions
from deltacrown.outbox.events import EVENT_KINDS
from deltacrown.outbox.services import emit
from deltacrown.reactions import REACTIONS


def test_emit_refuses_an_undeclared_kind_and_a_payload_of_another_shape(app):
    with app.app_context():
        with pytest.raises(ValueError, match="undeclared outbox event kind 'match_forfeited'"):
            emit("match_forfeited", match_id=1)
        with pytest.raises(ValueError, match=r"missing \['actor_id'\]"):
            emit("roster_changed", team_id=1, user_id=2, action="left")
        with pytest.raises(ValueError, match=r"unexpected \['score'\]"):
            emit("match_result", match_id=1, score="3:1")
        assert db.session.query(OutboxEvent).count() == 0 and not db.session.new


def test_every_declared_event_kind_has_its_reactions():
    """An entry for each kind (an empty tuple would say "nothing, on purpose"), none for others."""
    assert set(REACTIONS) == set(EVENT_KINDS)
    assert all(callable(reaction) for reactions in REACTIONS.values() for reaction in reactions)


def test_the_dispatcher_refuses_a_table_that_forgets_a_kind():
    forgetful = {kind: reactions for kind, reactions in REACTIONS.items() if kind != "match_result"}
    with pytest.raises(ValueError, match="no entry for \\['match_result'\\]"):
        install_reactions(forgetful)
    with pytest.raises(ValueError, match="undeclared kinds \\['match_forfeited'\\]"):
        install_reactions({**REACTIONS, "match_forfeited": ()})


def test_every_notification_type_has_an_audience_and_a_composer():
    for name, spec in NOTIFICATION_TYPES.items():
        assert isinstance(spec.audience, Audience) and spec.audience.description, name
        assert callable(spec.compose), name


def test_the_fan_out_refuses_a_type_outside_the_registry(app, users):
    uid = users.create("uma")
    with app.app_context():
        with pytest.raises(ValueError, match="unknown notification type 'no_such_type'"):
            NotificationService().notify([uid], "no_such_type", "t")
        assert db.session.query(Notification).count() == 0


def test_an_announcement_without_named_users_reaches_everyone(app, users):
    ids = [users.create(name) for name in ("ada", "ben", "cal")]
    with app.app_context():
        result = NotificationService().notify_about("announcement", {"title": "Hello", "body": "all"},
                                                    "announcement:hello", commit=True)
        assert result.recipients == 3
        assert sorted(db.session.scalars(db.select(Notification.user_id))) == sorted(ids)


def test_a_switched_off_webhook_reaches_its_owner_in_app_even_when_they_opted_out_of_in_app(app, users):
    """The owner must learn that we stopped posting: in-app is written whatever the preferences say."""
    uid = users.create("wes")
    with app.app_context():
        from deltacrown.models import NotificationPreference

        pref = NotificationPreference.get_or_create_for_user(db.session.get(User, uid))
        pref.opt_out_in_app = True
        pref.channels = {**(pref.channels or {}), "webhook_disabled": []}
        db.session.commit()
        NotificationService().notify_about("webhook_disabled", {"user_id": uid, "team_id": None, "url_digest": "d"},
                                           "webhook_disabled:test", commit=True)
        assert [n.type for n in db.session.scalars(db.select(Notification).where(Notification.user_id == uid))] \
            == ["webhook_disabled"]
