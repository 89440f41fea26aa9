import pytest

from deltacrown.errors import InvalidInput
from deltacrown.extensions import db
from deltacrown.models import NotificationPreferenceChange, User
from deltacrown.notifications.preferences import serialize_preferences, update_preferences


def test_update_records_what_changed_and_where_from(app, users):
    uid = users.create("vic")
    with app.app_context():
        user = db.session.get(User, uid)
        pref = update_preferences(user, {"channels": {"match_result": ["discord", "in_app"]},
                                         "digest_time": "19:30", "timezone": "Europe/Berlin"}, "api")
        data = serialize_preferences(pref)
        assert data["channels"]["match_result"] == ["in_app", "discord"]
        assert data["digest_time"] == "19:30" and data["timezone"] == "Europe/Berlin"
        change = db.session.query(NotificationPreferenceChange).one()
        assert change.source == "api"
        assert change.changes["channels.match_result"] == [["in_app", "email"], ["in_app", "discord"]]
        assert change.changes["digest_time"] == ["08:00", "19:30"]


@pytest.mark.parametrize("bad, field", [
    ({"channels": {"no_such_type": ["email"]}}, "channels"),
    ({"channels": {"match_result": ["pigeon"]}}, "channels"),
    ({"digest_time": "25:99"}, "digest_time"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"discord_webhook_url": "http://169.254.169.254/latest"}, "discord_webhook_url"),
    ({"discord_webhook_url": "https://discord.com/api/webhooks/abc/def"}, "discord_webhook_url"),
])
def test_bad_values_name_the_field_and_write_nothing(app, users, bad, field):
    uid = users.create("wes")
    with app.app_context():
        user = db.session.get(User, uid)
        with pytest.raises(InvalidInput) as err:
            update_preferences(user, {**bad, "opt_out_email": True}, "api")
        assert field in err.value.fields
        db.session.rollback()
        assert serialize_preferences(user_pref(user))["opt_out_email"] is False
        assert db.session.query(NotificationPreferenceChange).count() == 0


def user_pref(user):
    from deltacrown.models import NotificationPreference

    return NotificationPreference.get_or_create_for_user(user)


def test_webhook_under_configured_base_is_accepted(app, users):
    uid = users.create("xia")
    with app.app_context():
        url = app.config["DISCORD_API_BASE"] + "/webhooks/123456/abc_DEF-9"
        pref = update_preferences(db.session.get(User, uid), {"discord_webhook_url": url}, "editor")
        assert pref.discord_webhook_url == url
