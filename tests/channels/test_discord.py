"""Discord through a real HTTP server on loopback standing in for Discord."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from deltacrown.channels.discord import LIMITS, build_payload, discord_length
from deltacrown.notifications.content import ChannelMessage
from deltacrown.extensions import db
from deltacrown.models import Notification, NotificationPreference, NotificationPreferenceChange, Team, User
from deltacrown.notifications.preferences import update_preferences
from deltacrown.notifications.types import NOTIFICATION_TYPES
from tests.support.processes import wait_for


def _set_user_webhook(app, user_id, url, types=("match_result",)):
    with app.app_context():
        user = db.session.get(User, user_id)
        update_preferences(user, {"discord_webhook_url": url,
                                  "channels": {t: ["in_app", "discord"] for t in types}}, "api")


def _make_team(app, captain_id, url, name="Nova"):
    with app.app_context():
        team = Team(name=name, tag="NV", captain_id=captain_id, discord_webhook_url=url)
        db.session.add(team)
        db.session.commit()
        return team.id


@pytest.fixture
def send_to_team_webhook(app, users, make, enqueue, run_jobs, discord_server):
    """`send_to_team_webhook(hook)`: one match result for a team whose Discord webhook is the
    stand-in's `hook`, sent by the jobs (every try in this burst); the delivery as it ends."""
    def send(hook: int):
        team_id = _make_team(app, users.create("cap"), discord_server.webhook_url(hook))
        did = make.delivery("discord", f"team:{team_id}", payload={"type": "match_result", "title": "2-1"})
        enqueue(did)
        run_jobs()
        return make.get(did)
    return send


def test_user_webhook_gets_one_rich_embed_and_the_message_id_is_kept(
        app, users, make, enqueue, run_jobs, discord_server):
    uid = users.create("alice")
    _set_user_webhook(app, uid, discord_server.webhook_url(11))
    nid = make.notification(uid, type="match_result", title="Nova 2 - 1 Eclipse", body="Quarter-final.",
                            url="/tournaments/3#match-7")
    did = make.delivery("discord", f"user:{uid}", notification_id=nid, user_id=uid)
    enqueue(did)
    run_jobs()

    [message] = discord_server.wait_for_messages(11, 1)
    [embed] = message["embeds"]
    assert embed["title"] == "🏁 Nova 2 - 1 Eclipse"
    assert embed["description"] == "Quarter-final."
    assert embed["footer"]["text"] == "DeltaCrown · Match result"
    assert embed["color"] == NOTIFICATION_TYPES["match_result"].colour
    assert embed["url"] == "http://localhost:5000/tournaments/3#match-7"
    assert datetime.fromisoformat(embed["timestamp"]).tzinfo is not None
    assert message["allowed_mentions"] == {"parse": []}
    d = make.get(did)
    assert (d.status, d.attempts, d.external_id) == ("sent", 1, message["id"])
    assert discord_server.violations == []

    enqueue(did, did)  # duplicates of the job
    run_jobs()
    assert len(discord_server.messages(11)) == 1


def test_team_and_platform_targets_post_from_the_payload(app, users, make, enqueue, run_jobs, discord_server):
    cap = users.create("cap")
    team_id = _make_team(app, cap, discord_server.webhook_url(21))
    app.config["DISCORD_WEBHOOK_URL"] = discord_server.webhook_url(22)
    payload = {"type": "achievement_earned", "title": "Nova earned Champion", "body": "Spring Cup",
               "url": "/teams/1", "fields": [{"name": "Tournament", "value": "Spring Cup", "inline": True}]}
    team_delivery = make.delivery("discord", f"team:{team_id}", payload=payload)
    platform_delivery = make.delivery("discord", "platform", payload=payload)
    enqueue(team_delivery, platform_delivery)
    run_jobs()
    [team_msg] = discord_server.wait_for_messages(21, 1)
    [platform_msg] = discord_server.wait_for_messages(22, 1)
    assert team_msg["embeds"][0]["fields"] == [{"name": "Tournament", "value": "Spring Cup", "inline": True}]
    assert "Champion" in platform_msg["embeds"][0]["title"]
    assert make.get(team_delivery).status == make.get(platform_delivery).status == "sent"


def test_every_field_is_cut_to_discords_limits_with_an_ellipsis(app, users, make, enqueue, run_jobs, discord_server):
    cap = users.create("cap")
    team_id = _make_team(app, cap, discord_server.webhook_url(31))
    payload = {"type": "announcement", "title": "T" * 400 + "🪙" * 50, "body": "*" * 9000,
               "fields": [{"name": "n" * 300, "value": "v" * 2000} for _ in range(30)]}
    did = make.delivery("discord", f"team:{team_id}", payload=payload)
    enqueue(did)
    run_jobs()
    [message] = discord_server.wait_for_messages(31, 1)
    embed = message["embeds"][0]
    assert discord_server.violations == []
    assert discord_length(embed["title"]) <= 256 and embed["title"].endswith("…")
    assert embed["description"].endswith("…") and not embed["description"].endswith("\\…")
    assert len(embed["fields"]) <= LIMITS["fields"]
    assert all(f["value"].endswith("…") and discord_length(f["value"]) <= 1024 for f in embed["fields"])
    assert make.get(did).status == "sent"


@pytest.mark.parametrize("limit_case", ["content", "total"])
def test_build_payload_never_exceeds_limits(app, limit_case):
    from tests.support.discord import payload_problems

    with app.app_context():
        msg = ChannelMessage(type="announcement", title="x" * 300, body="y" * 5000,
                             fields=tuple({"name": "n" * 256, "value": "@" * 1024} for _ in range(25)))
        payload = build_payload(msg.discord_embed(), content="<@&123> " * 500 if limit_case == "content" else None)
        assert payload_problems(payload) == []


def test_hostile_text_arrives_inert_in_discord(app, users, make, enqueue, run_jobs, discord_server):
    uid = users.create("mallory")
    _set_user_webhook(app, uid, discord_server.webhook_url(41), types=("announcement",))
    title = "@everyone <@&1234> [free nitro](http://evil.example) <script>x</script>"
    body = "**bold** @here <@99> [click](https://evil.example/steal)\n# Heading\n- item\n> quote `code`"
    nid = make.notification(uid, type="announcement", title=title, body=body)
    enqueue(make.delivery("discord", f"user:{uid}", notification_id=nid, user_id=uid))
    run_jobs()
    [message] = discord_server.wait_for_messages(41, 1)
    embed = message["embeds"][0]
    assert message["allowed_mentions"] == {"parse": []}
    for text in (embed["title"], embed["description"]):
        assert "@everyone" not in text and "@here" not in text
        assert not re.search(r"(?<!\\)<@", text) and "](" not in text  # no mentions, no masked links
        assert "**" not in text and "\n#" not in text and "\n-" not in text and "\n>" not in text
    assert "\\[free nitro\\]\\(http://evil.example\\)" in embed["title"]
    assert "\\<script\\>" in embed["title"]


def test_team_webhook_404_switches_it_off_and_tells_the_captain(app, users, make, enqueue, run_jobs, discord_server):
    cap = users.create("cap")
    url = discord_server.webhook_url(51)
    team_id = _make_team(app, cap, url)
    discord_server.delete(51)
    first = make.delivery("discord", f"team:{team_id}", payload={"type": "roster_changed", "title": "Joined"})
    second = make.delivery("discord", f"team:{team_id}", payload={"type": "roster_changed", "title": "Left"})
    enqueue(first)
    run_jobs()
    d = make.get(first)
    assert d.status == "failed" and d.attempts == 1 and "404" in d.last_error
    with app.app_context():
        assert db.session.get(Team, team_id).discord_webhook_url is None
        [note] = db.session.query(Notification).filter_by(user_id=cap, type="webhook_disabled").all()
        assert "Nova" in note.title and note.is_read is False
    enqueue(second)
    run_jobs()
    assert make.get(second).status == "failed" and "no Discord webhook" in make.get(second).last_error
    assert len(discord_server.arrivals(51)) == 1  # nothing more posted into the void


def test_player_webhook_404_switches_it_off_via_preferences(app, users, make, enqueue, run_jobs, discord_server):
    uid = users.create("pia")
    _set_user_webhook(app, uid, discord_server.webhook_url(52))
    discord_server.delete(52)
    did = make.delivery("discord", f"user:{uid}", notification_id=make.notification(uid), user_id=uid)
    enqueue(did)
    run_jobs()
    assert make.get(did).status == "failed"
    with app.app_context():
        assert db.session.query(NotificationPreference).filter_by(user_id=uid).one().discord_webhook_url is None
        change = db.session.query(NotificationPreferenceChange).filter_by(user_id=uid, source="system").one()
        assert "discord_webhook_url" in change.changes
        assert db.session.query(Notification).filter_by(user_id=uid, type="webhook_disabled").count() == 1


def test_5xx_is_retried_and_arrives_once(discord_server, send_to_team_webhook):
    discord_server.fail_next(61, status=503)
    d = send_to_team_webhook(61)
    assert d.status == "sent" and d.attempts == 2 and d.last_error is None
    assert len(discord_server.messages(61)) == 1


def test_other_4xx_fails_at_once_and_is_recorded(discord_server, send_to_team_webhook):
    discord_server.fail_next(62, status=403)
    d = send_to_team_webhook(62)
    assert d.status == "failed" and d.attempts == 1 and "403" in d.last_error
    assert len(discord_server.arrivals(62)) == 1


@pytest.mark.parametrize("header_only", [False, True])
def test_429_is_honoured_before_the_next_try(discord_server, send_to_team_webhook, header_only):
    discord_server.rate_limit_next(63, retry_after=0.6, in_header_only=header_only)
    d = send_to_team_webhook(63)
    first, second = discord_server.arrivals(63)
    assert second - first >= 0.55
    assert d.status == "sent" and len(discord_server.messages(63)) == 1


def test_slow_server_times_out_and_is_recorded(app, discord_server, send_to_team_webhook):
    app.config["DELIVERY_RETRY_INTERVALS"] = []  # one try only
    discord_server.hang(64)
    d = send_to_team_webhook(64)
    assert d.status == "failed" and d.attempts == 1
    assert "did not answer within 1 s" in d.last_error


def test_non_json_bodies_are_recorded(discord_server, send_to_team_webhook):
    discord_server.garbage_next(65, status=502)  # a proxy's HTML error page: retried
    discord_server.garbage_next(65, status=200)  # accepted, but no readable answer
    d = send_to_team_webhook(65)
    assert d.status == "sent" and d.attempts == 2 and d.external_id is None
    assert "not JSON" in d.last_error  # recorded: Discord's answer could not be read


def test_concurrent_duplicate_jobs_send_once(app, users, make, enqueue, discord_server, worker_processes):
    """Three worker processes race on the same delivery ids: each message arrives exactly once."""
    cap = users.create("cap")
    team_id = _make_team(app, cap, discord_server.webhook_url(66))
    discord_server.bucket_limit = 1000
    ids = [make.delivery("discord", f"team:{team_id}", payload={"type": "match_result", "title": f"m{n}"})
           for n in range(6)]
    for _ in range(3):
        enqueue(*ids)
    worker_processes.start(3)
    wait_for(lambda: all(make.get(i).status != "pending" for i in ids), 60, interval=0.1, message="all deliveries done")
    assert all(make.get(i).status == "sent" for i in ids), worker_processes.logs()
    titles = sorted(m["embeds"][0]["title"] for m in discord_server.messages(66))
    assert titles == sorted(f"🏁 m{n}" for n in range(6))
