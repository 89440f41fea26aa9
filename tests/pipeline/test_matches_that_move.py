"""Matches that move (issue 17), through the JSON API, real RQ workers on real Redis, the
rq-scheduler that wakes reminders (driven in-process with time moved by time-machine), the
loopback SMTP server and the Discord stand-in (which edits messages like Discord does)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.models import DiscordCard, Match, MatchReminder, Notification, OutboxEvent, Team
from deltacrown.notifications.digests import send_daily_digest
from deltacrown.notifications.jobs import send_match_reminder
from deltacrown.notifications.reminders import reminder_job_id, sweep_reminders
from deltacrown.notifications.types import NOTIFICATION_TYPES
from deltacrown.queue import AppJob, QUEUE_NOTIFICATIONS, get_redis
from tests.api.helpers import iso

TEAM_HOOK, PLATFORM_HOOK = 41, 90
MEMBERS = ("cap", "ann", "bob", "cyd", "dee")  # Red: cap, ann, bob; Blue: cyd, dee


@pytest.fixture
def app_config(discord_server, smtp_server):
    return {**discord_server.config(), **smtp_server.config(), "DELIVERY_RETRY_INTERVALS": [0, 0],
            "DISCORD_WEBHOOK_URL": discord_server.webhook_url(PLATFORM_HOOK)}


@pytest.fixture
def cup(api, league, run_jobs, discord_server):
    """An ongoing Winter Cup with Red (team webhook on the stand-in) and Blue registered."""
    api.put(f"/teams/{league['red']}/discord-webhook", "cap", {"url": discord_server.webhook_url(TEAM_HOOK)},
            expect=200)
    tid = api.tournament()
    for team in (league["red"], league["blue"]):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    api.post(f"/tournaments/{tid}/bracket-ready", "admin", expect=200)
    run_jobs()
    for hook in (TEAM_HOOK, PLATFORM_HOOK):
        discord_server.forget(hook)  # the registrations' and the bracket's posts
    return {**league, "tournament": tid}


def _now():
    return datetime.now(timezone.utc).replace(microsecond=0)


def _schedule(api, cup, when) -> int:
    return api.post(f"/tournaments/{cup['tournament']}/matches", "admin",
                    {"team_a_id": cup["red"], "team_b_id": cup["blue"], "scheduled_at": iso(when)},
                    expect=201).json["id"]


def _reschedule(api, match_id, when, expect=200):
    return api.call("PATCH", f"/matches/{match_id}", "admin", json={"scheduled_at": iso(when)}, expect=expect)


def _scheduler(app):
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=QUEUE_NOTIFICATIONS, connection=get_redis(app), job_class=AppJob)


def _job_time(app, match_id):
    score = get_redis(app).zscore(_scheduler(app).scheduled_jobs_key, reminder_job_id(match_id))
    return None if score is None else datetime.fromtimestamp(score, timezone.utc)


def _reminder(api, match_id) -> MatchReminder:
    [row] = api.rows(MatchReminder, MatchReminder.match_id == match_id)
    return row


def _embed(discord_server, hook, message_id):
    return discord_server.current(hook)[message_id]["embeds"][0]


def _wake_schedulers(app, count=2):
    """What the scheduler processes do each round (`enqueue_jobs`), here `count` of them."""
    for _ in range(count):
        _scheduler(app).enqueue_jobs()


def test_life_of_a_match_scheduled_rescheduled_twice_reminded_once_and_played(
        app, api, cup, users, run_jobs, discord_server, smtp_server):
    start = _now() + timedelta(days=1)
    match_id = _schedule(api, cup, start)
    run_jobs()
    # Scheduled: one card on the team webhook, a notification per member, the reminder waiting.
    [card] = discord_server.messages(TEAM_HOOK)
    assert card["embeds"][0]["title"] == "📅 Red vs Blue"
    assert api.notified("match_scheduled") == {name: 1 for name in MEMBERS}
    assert _job_time(app, match_id) == start - timedelta(minutes=60)
    first_ids = {n.user_id: n.id for n in api.rows(Notification, Notification.type == "match_scheduled")}
    api.post(f"/notifications/{first_ids[users.ids['cap']]}/read", "cap", expect=200)
    scheduled_mails = len(smtp_server.wait_for(len(MEMBERS)))

    # Rescheduled twice: the same card edited twice, the reminder job moved twice.
    second, final = start + timedelta(days=1), start + timedelta(days=2, hours=3)
    _reschedule(api, match_id, second)
    run_jobs()
    assert _job_time(app, match_id) == second - timedelta(minutes=60)
    body = _reschedule(api, match_id, final).json
    assert datetime.fromisoformat(body["scheduled_at"]) == final
    run_jobs()
    assert _job_time(app, match_id) == final - timedelta(minutes=60)
    assert len(discord_server.messages(TEAM_HOOK)) == 1
    edits = discord_server.wait_for_edits(TEAM_HOOK, 2)
    assert len(edits) == 2 and {e["id"] for e in edits} == {card["id"]}
    assert _embed(discord_server, TEAM_HOOK, card["id"])["fields"][0]["value"] == final.strftime(
        "%a %d %b %Y, %H:%M UTC")
    # In-app: still one item per member, rewritten with the final time, unread again, on top.
    notes = api.rows(Notification, Notification.type == "match_scheduled")
    assert sorted(users.ids[m] for m in MEMBERS) == sorted(n.user_id for n in notes)
    final_text = final.strftime("%a %d %b %Y, %H:%M UTC")
    for note in notes:
        assert note.title == "Match rescheduled: Red vs Blue"
        assert f"now {final_text}" in note.body and not note.is_read
        assert note.id > max(first_ids.values())
    top = api.get("/notifications", "cap", expect=200).json["items"][0]
    assert top["title"] == "Match rescheduled: Red vs Blue" and top["is_read"] is False
    # Email: a short "Rescheduled" email per change (an email cannot be edited).
    mails = smtp_server.wait_for(scheduled_mails + 2 * len(MEMBERS))
    assert sum("Match rescheduled" in m.subject for m in mails) == 2 * len(MEMBERS)

    # The digest of the day lists the match once, at its final time.
    tomorrow = (_now() + timedelta(days=1)).replace(hour=8, minute=0, second=0)
    with time_machine.travel(tomorrow, tick=True), app.app_context():
        before = len(smtp_server.messages)
        assert send_daily_digest()["sent"] >= 1
        [digest] = [m for m in smtp_server.messages[before:] if m["To"] == "ann@example.com"]
    assert digest.text.count("Match rescheduled: Red vs Blue") == 1 and final_text in digest.text
    assert second.strftime("%a %d %b %Y, %H:%M UTC") not in digest.text
    assert start.strftime("%a %d %b %Y, %H:%M UTC") not in digest.text
    mails_before_reminder = len(smtp_server.messages)

    # The reminder: not a minute early, then once, although two schedulers wake it and a
    # duplicate job runs too.
    due = final - timedelta(minutes=60)
    with time_machine.travel(due - timedelta(minutes=1), tick=True):
        _wake_schedulers(app)
        run_jobs()
        assert api.notified("match_reminder") == {}
    with time_machine.travel(due + timedelta(seconds=5), tick=True):
        _wake_schedulers(app)
        with app.app_context():
            send_match_reminder.enqueue(match_id)
        run_jobs()
        with app.app_context():
            assert sweep_reminders()["sent"] == 0
        run_jobs()
    assert api.notified("match_reminder") == {name: 1 for name in MEMBERS}
    assert _reminder(api, match_id).status == "sent" and _job_time(app, match_id) is None
    [reminder_mail] = [m for m in smtp_server.wait_for(mails_before_reminder + len(MEMBERS))
                       if "Starting soon" in m.subject and m["To"] == "ann@example.com"]
    assert final_text in reminder_mail.text
    # On the team webhook the reminder is a post of its own; the card is still the one card.
    assert [m["embeds"][0]["title"] for m in discord_server.wait_for_messages(TEAM_HOOK, 2)] == [
        "📅 Red vs Blue", "⏰ Starting soon: Red vs Blue"]

    # The result: the card is edited once more (score, winner, colour).
    api.post(f"/matches/{match_id}/result", "admin", {"score_a": 2, "score_b": 1}, expect=200)
    run_jobs()
    discord_server.wait_for_edits(TEAM_HOOK, 3)
    embed = _embed(discord_server, TEAM_HOOK, card["id"])
    assert embed["title"] == "🏁 Red 2 : 1 Blue" and embed["description"] == "Winter Cup. Red won."
    assert embed["color"] == NOTIFICATION_TYPES["match_result"].colour
    assert len(discord_server.messages(TEAM_HOOK)) == 2
    assert discord_server.violations == []


def test_result_cancels_the_reminder_and_edits_the_card(app, api, cup, run_jobs, discord_server):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    run_jobs()
    assert _job_time(app, match_id) is not None
    api.post(f"/matches/{match_id}/result", "admin", {"score_a": 0, "score_b": 0}, expect=200)
    run_jobs()
    assert _reminder(api, match_id).status == "cancelled"
    assert _job_time(app, match_id) is None
    assert not get_redis(app).exists(AppJob.key_for(reminder_job_id(match_id)))  # nothing left waiting
    [card] = discord_server.messages(TEAM_HOOK)
    [edit] = discord_server.wait_for_edits(TEAM_HOOK, 1)
    assert edit["id"] == card["id"] and edit["embeds"][0]["description"] == "Winter Cup. Draw."
    # Nothing is reminded later, whatever wakes up.
    with time_machine.travel(_now() + timedelta(days=1), tick=True):
        _wake_schedulers(app)
        with app.app_context():
            send_match_reminder.enqueue(match_id)
            sweep_reminders()
        run_jobs()
    assert api.notified("match_reminder") == {}


def test_tournament_end_cancels_pending_reminders(app, api, cup, run_jobs):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    run_jobs()
    api.post(f"/tournaments/{cup['tournament']}/complete", "admin", {"placements": [cup["red"]]}, expect=200)
    run_jobs()
    assert _reminder(api, match_id).status == "cancelled"
    assert _job_time(app, match_id) is None
    _reschedule(api, match_id, _now() + timedelta(days=2), expect=409)


def test_a_deleted_card_is_posted_again_once(app, api, cup, run_jobs, discord_server):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    run_jobs()
    [card] = discord_server.messages(TEAM_HOOK)
    discord_server.delete_message(TEAM_HOOK, card["id"])
    _reschedule(api, match_id, _now() + timedelta(days=2))
    run_jobs()
    messages = discord_server.wait_for_messages(TEAM_HOOK, 2)
    assert len(messages) == 2 and discord_server.edits(TEAM_HOOK) == []
    [row] = api.rows(DiscordCard, DiscordCard.card_key == f"match:{match_id}")
    assert (row.message_id, row.posts) == (messages[1]["id"], 2)
    # The webhook itself still exists: it is not switched off, and the next change edits the new card.
    assert api.rows(Team, Team.id == cup["red"])[0].discord_webhook_url
    api.post(f"/matches/{match_id}/result", "admin", {"score_a": 1, "score_b": 3}, expect=200)
    run_jobs()
    [edit] = discord_server.wait_for_edits(TEAM_HOOK, 1)
    assert edit["id"] == messages[1]["id"] and len(discord_server.messages(TEAM_HOOK)) == 2


def test_a_card_on_a_webhook_that_is_gone_takes_the_switch_off_path(app, api, cup, run_jobs, discord_server):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    run_jobs()
    discord_server.delete(TEAM_HOOK)
    _reschedule(api, match_id, _now() + timedelta(days=2))
    run_jobs()
    assert api.rows(Team, Team.id == cup["red"])[0].discord_webhook_url is None
    assert api.notified("webhook_disabled") == {"cap": 1}
    assert len(discord_server.messages(TEAM_HOOK)) == 1


def test_reschedule_rules(app, api, cup, run_jobs, users):
    when = _now() + timedelta(days=1)
    match_id = _schedule(api, cup, when)
    run_jobs()
    # The same time (in another zone, even): nothing changes, no event.
    same = when.astimezone(timezone(timedelta(hours=2)))
    assert api.call("PATCH", f"/matches/{match_id}", "admin", json={"scheduled_at": same.isoformat()},
                    expect=200).json["scheduled_at"]
    assert api.rows(OutboxEvent, OutboxEvent.type == "match_rescheduled") == []
    # Bad input: a clear 4xx, nothing written.
    assert api.call("PATCH", f"/matches/{match_id}", "admin", json={"scheduled_at": "tomorrow"},
                    expect=422).json["error"]["fields"].get("scheduled_at")
    assert api.call("PATCH", f"/matches/{match_id}", "admin", json={}, expect=422)
    api.call("PATCH", f"/matches/{match_id}", "cap", json={"scheduled_at": iso(when)}, expect=403)
    api.call("PATCH", "/matches/999999", "admin", json={"scheduled_at": iso(when)}, expect=404)
    # Played: 409, and the time stays.
    api.post(f"/matches/{match_id}/result", "admin", {"score_a": 1, "score_b": 0}, expect=200)
    _reschedule(api, match_id, when + timedelta(hours=1), expect=409)
    assert api.rows(Match, Match.id == match_id)[0].scheduled_at == when
    assert api.rows(OutboxEvent, OutboxEvent.type == "match_rescheduled") == []


def test_no_reminder_for_a_time_already_past(app, api, cup, run_jobs):
    soon = _now() + timedelta(minutes=10)
    match_id = _schedule(api, cup, soon)
    run_jobs()
    assert _reminder(api, match_id).status == "skipped" and _job_time(app, match_id) is None
    # Moved far enough ahead, it gets one after all.
    later = _now() + timedelta(hours=5)
    _reschedule(api, match_id, later)
    run_jobs()
    assert _job_time(app, match_id) == later - timedelta(minutes=60)


def test_a_reschedule_that_overtakes_the_queued_reminder_moves_it(app, api, cup, run_jobs):
    start = _now() + timedelta(hours=3)
    match_id = _schedule(api, cup, start)
    run_jobs()
    due = start - timedelta(minutes=60)
    with time_machine.travel(due + timedelta(seconds=5), tick=True):
        _wake_schedulers(app, 1)  # the reminder job is on the queue ...
        later = start + timedelta(hours=4)
        _reschedule(api, match_id, later)  # ... when the match moves: the database wins
        run_jobs()
        assert api.notified("match_reminder") == {}
        assert _job_time(app, match_id) == later - timedelta(minutes=60)
    with time_machine.travel(later - timedelta(minutes=59), tick=True):
        _wake_schedulers(app)
        run_jobs()
    assert api.notified("match_reminder") == {name: 1 for name in MEMBERS}


def test_the_sweep_recreates_a_lost_reminder_job_and_sends_a_due_one_once(app, api, cup, run_jobs):
    start = _now() + timedelta(hours=3)
    match_id = _schedule(api, cup, start)
    run_jobs()
    get_redis(app).flushdb()  # Redis restarted empty
    with app.app_context():
        assert sweep_reminders()["rescheduled"] == 1
    assert _job_time(app, match_id) == start - timedelta(minutes=60)
    get_redis(app).flushdb()
    with time_machine.travel(start - timedelta(minutes=50), tick=True):
        with app.app_context():
            assert sweep_reminders()["sent"] == 1
            assert sweep_reminders()["sent"] == 0
        run_jobs()
    assert api.notified("match_reminder") == {name: 1 for name in MEMBERS}


def test_one_standings_card_per_tournament_edited_after_each_recompute(app, api, cup, run_jobs, discord_server):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    api.post(f"/matches/{match_id}/result", "admin", {"score_a": 2, "score_b": 0}, expect=200)
    run_jobs()
    api.post("/jobs/recompute-rankings/run", "admin", expect=202)
    run_jobs()
    platform = [m for m in discord_server.messages(PLATFORM_HOOK) if m["embeds"][0]["title"].startswith("📈")]
    assert [m["embeds"][0]["title"] for m in platform] == ["📈 Standings: Winter Cup"]
    assert platform[0]["embeds"][0]["description"] == "1st Red: 3 pts, 1W 0D 0L\n2nd Blue: 0 pts, 0W 0D 1L"
    # The same standings again: no edit. Completing the cup: the same card, now final.
    api.post("/jobs/recompute-rankings/run", "admin", expect=202)
    run_jobs()
    assert discord_server.edits(PLATFORM_HOOK) == []
    api.post(f"/tournaments/{cup['tournament']}/complete", "admin", {"placements": [cup["red"]]}, expect=200)
    run_jobs()
    [edit] = discord_server.wait_for_edits(PLATFORM_HOOK, 1)
    assert edit["id"] == platform[0]["id"] and edit["embeds"][0]["title"] == "📈 Final standings: Winter Cup"
    # The public results feed stays new posts.
    assert any(m["embeds"][0]["title"] == "🏁 Red 2 : 0 Blue" for m in discord_server.messages(PLATFORM_HOOK))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DiscordCard)
                                 .where(DiscordCard.target == "platform")) == 1


def test_a_rate_limited_edit_waits_and_lands_once(app, api, cup, run_jobs, discord_server):
    match_id = _schedule(api, cup, _now() + timedelta(days=1))
    run_jobs()
    discord_server.rate_limit_next(TEAM_HOOK, retry_after=0.3)
    _reschedule(api, match_id, _now() + timedelta(days=2))
    run_jobs()
    assert discord_server.count_429(TEAM_HOOK) == 1
    assert len(discord_server.wait_for_edits(TEAM_HOOK, 1)) == 1 and len(discord_server.messages(TEAM_HOOK)) == 1


def test_the_ops_dashboard_lists_upcoming_reminders(app, api, cup, run_jobs, auth):
    start = _now() + timedelta(days=1)
    match_id = _schedule(api, cup, start)
    run_jobs()
    auth.login("admin")
    page = api.client.get("/ops").get_data(as_text=True)
    section = page[page.index('id="ops-reminders"'):]
    assert "Red vs Blue" in section and reminder_job_id(match_id) in section and "scheduled" in section
    get_redis(app).delete(_scheduler(app).scheduled_jobs_key)  # the job is lost: the page says so
    page = api.client.get("/ops").get_data(as_text=True)
    assert "missing" in page[page.index('id="ops-reminders"'):]
