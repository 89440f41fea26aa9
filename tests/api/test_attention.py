"""Attention through the JSON API (issue 16, items 1, 2 and 4): seen vs read vs archived,
snooze (a wake-up job in rq-scheduler, run by a real RQ worker; the sweep after Redis lost
it), and critical types. Notifications are made by the real pipeline (announcement job on a
real worker); time moves in-process with time-machine."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from rq_scheduler import Scheduler

from deltacrown.notifications import center
from deltacrown.notifications.jobs import wake_snoozed_sweep
from deltacrown.notifications.models import Notification, NotificationPreferenceChange
from deltacrown.notifications.types import CRITICAL_TYPES
from deltacrown.ops.scheduler import make_scheduler, silence_utcnow_deprecation
from deltacrown.queue import get_queue, get_redis

SET = Scheduler.scheduled_jobs_key


@pytest.fixture
def eve_notes(api, league, run_jobs):
    """Three announcements to eve (oldest first), made by the announcement job on a worker."""
    for i in range(3):
        api.post("/announcements", "admin", {"title": f"News {i}", "user_ids": [api.users.ids["eve"]]}, expect=202)
    run_jobs()
    items = api.get("/notifications", "eve", expect=200).json["items"]
    assert [i["title"] for i in items] == ["News 2", "News 1", "News 0"]
    return [i["id"] for i in reversed(items)]


def counts(api, who="eve"):
    return api.get("/notifications/unread-count", who, expect=200).json


def listed(api, who="eve", query=""):
    return [i["id"] for i in api.get(f"/notifications{query}", who, expect=200).json["items"]]


def iso_in(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def wake_jobs(app) -> dict[str, float]:
    with app.app_context():
        return {k.decode(): v for k, v in get_redis().zrange(SET, 0, -1, withscores=True)
                if k.decode().startswith("snooze-")}


# --- seen, read, archived -------------------------------------------------------------

def test_items_carry_the_attention_fields_and_seen_is_apart_from_read(api, eve_notes):
    first, second, third = eve_notes
    item = api.get("/notifications", "eve", expect=200).json["items"][0]
    assert {k: item[k] for k in ("seen_at", "read_at", "archived_at", "snoozed_until")} == dict.fromkeys(
        ("seen_at", "read_at", "archived_at", "snoozed_until"))
    assert counts(api) == {"count": 3, "unseen": 3}

    assert api.post("/notifications/seen", "eve", {"ids": [first, second]}, expect=200).json == {"updated": 2}
    assert counts(api) == {"count": 3, "unseen": 1}  # seen is not read
    assert api.post("/notifications/seen", "eve", {"ids": [first, second]}, expect=200).json == {"updated": 0}
    assert api.post("/notifications/seen", "eve", {"up_to_id": third}, expect=200).json == {"updated": 1}
    assert counts(api) == {"count": 3, "unseen": 0}
    items = {i["id"]: i for i in api.get("/notifications", "eve", expect=200).json["items"]}
    assert all(i["seen_at"] and i["read_at"] is None and not i["is_read"] for i in items.values())

    # reading implies seen
    api.post("/announcements", "admin", {"title": "Later", "user_ids": [api.users.ids["eve"]]}, expect=202)
    from deltacrown.queue import run_burst
    run_burst(api.app)
    assert counts(api) == {"count": 4, "unseen": 1}
    newest = listed(api)[0]
    read = api.post(f"/notifications/{newest}/read", "eve", expect=200).json
    assert read["seen_at"] and read["read_at"] and counts(api) == {"count": 3, "unseen": 0}


def test_seen_touches_only_the_callers_and_needs_one_selector(api, eve_notes, users):
    api.post("/announcements", "admin", {"title": "For bob", "user_ids": [users.ids["bob"]]}, expect=202)
    from deltacrown.queue import run_burst
    run_burst(api.app)
    bobs = listed(api, "bob")[0]
    bob_before = counts(api, "bob")
    # eve naming bob's notification (and all up to it) changes nothing of bob's
    assert api.post("/notifications/seen", "eve", {"ids": [bobs]}, expect=200).json == {"updated": 0}
    assert api.post("/notifications/seen", "eve", {"up_to_id": bobs}, expect=200).json == {"updated": 3}
    assert counts(api, "bob") == bob_before and bob_before["unseen"] >= 1
    for body in ({}, {"ids": [1], "up_to_id": 1}, {"ids": []}, {"ids": [0]}, {"up_to_id": "x"}):
        response = api.post("/notifications/seen", "eve", body)
        assert response.status_code == 422, (body, response.get_data(as_text=True))
        assert set(response.json["error"]["fields"]) <= {"ids", "up_to_id"}, response.json


def test_archive_leaves_the_list_and_counts_and_has_its_own_filter(api, eve_notes):
    first, second, third = eve_notes
    archived = api.post(f"/notifications/{second}/archive", "eve", expect=200).json
    assert archived["archived_at"] and archived["id"] == second
    assert listed(api) == [third, first]
    assert listed(api, query="?archived=true") == [second]
    assert counts(api) == {"count": 2, "unseen": 2}
    assert listed(api, query="?archived=false&unread=true") == [third, first]
    back = api.post(f"/notifications/{second}/unarchive", "eve", expect=200).json
    assert back["archived_at"] is None
    assert listed(api) == [third, second, first] and listed(api, query="?archived=true") == []
    # someone else's: as good as missing
    assert api.post(f"/notifications/{second}/archive", "bob").status_code == 404
    assert api.post("/notifications/2147483647/unarchive", "eve").status_code == 404


# --- snooze ------------------------------------------------------------------------------

def test_snooze_hides_then_a_real_worker_wakes_it_unread_and_unseen(app, api, eve_notes, run_jobs):
    first, second, third = eve_notes
    api.post(f"/notifications/{second}/read", "eve", expect=200)
    api.post("/notifications/seen", "eve", {"up_to_id": third}, expect=200)
    assert counts(api) == {"count": 2, "unseen": 0}

    start = datetime.now(timezone.utc)
    until = start + timedelta(hours=1)
    snoozed = api.post(f"/notifications/{second}/snooze", "eve", {"until": until.isoformat()}, expect=200).json
    assert datetime.fromisoformat(snoozed["snoozed_until"]) == until.replace(microsecond=until.microsecond)
    assert listed(api) == [third, first] and second not in listed(api, query="?unread=true")
    assert listed(api, query="?snoozed=true") == [second]
    assert counts(api) == {"count": 2, "unseen": 0}
    assert list(wake_jobs(app)) == [f"snooze-{second}"]
    assert abs(wake_jobs(app)[f"snooze-{second}"] - until.timestamp()) < 1

    silence_utcnow_deprecation()
    with time_machine.travel(until - timedelta(minutes=1), tick=True):
        with app.app_context():
            make_scheduler(app).enqueue_jobs()  # what the scheduler process does: not due yet
            assert get_queue("notifications").job_ids == []
        assert second not in listed(api) and list(wake_jobs(app)) == [f"snooze-{second}"]
    with time_machine.travel(until + timedelta(seconds=5), tick=True):
        with app.app_context():
            make_scheduler(app).enqueue_jobs()  # due: moved to the notifications queue
            assert get_queue("notifications").job_ids == [f"snooze-{second}"]
        run_jobs()  # a real RQ worker runs the wake-up
        assert wake_jobs(app) == {}
        assert listed(api) == [third, second, first]
        woken = api.get("/notifications", "eve", expect=200).json["items"][1]
        assert (woken["snoozed_until"], woken["is_read"], woken["read_at"], woken["seen_at"]) == (None, False, None,
                                                                                                   None)
        assert counts(api) == {"count": 3, "unseen": 1}  # the badge bumps
        # the job again (a second scheduler, a retry): nothing changes
        with app.app_context():
            assert center.wake(second) == 0
        assert counts(api) == {"count": 3, "unseen": 1}


def test_resnooze_moves_the_one_job_and_unsnooze_cancels_it(app, api, eve_notes):
    first = eve_notes[0]
    api.post(f"/notifications/{first}/snooze", "eve", {"until": iso_in(hours=3)}, expect=200)
    later = datetime.now(timezone.utc) + timedelta(days=2)
    api.post(f"/notifications/{first}/snooze", "eve", {"until": later.isoformat()}, expect=200)
    jobs = wake_jobs(app)
    assert list(jobs) == [f"snooze-{first}"] and abs(jobs[f"snooze-{first}"] - later.timestamp()) < 1
    with app.app_context():
        assert get_redis().exists(f"rq:job:snooze-{first}")

    back = api.delete(f"/notifications/{first}/snooze", "eve", expect=200).json
    assert back["snoozed_until"] is None and first in listed(api)
    assert wake_jobs(app) == {}
    with app.app_context():
        assert not get_redis().exists(f"rq:job:snooze-{first}")
    api.delete(f"/notifications/{first}/snooze", "eve", expect=200)  # not snoozed: nothing to do
    # archiving a snoozed one ends the snooze (one or the other)
    api.post(f"/notifications/{first}/snooze", "eve", {"until": iso_in(hours=1)}, expect=200)
    archived = api.post(f"/notifications/{first}/archive", "eve", expect=200).json
    assert archived["snoozed_until"] is None and wake_jobs(app) == {}
    assert listed(api, query="?archived=true") == [first]


def test_the_database_is_the_truth_when_the_job_never_ran(app, api, eve_notes):
    first = eve_notes[0]
    until = datetime.now(timezone.utc) + timedelta(minutes=10)
    api.post(f"/notifications/{first}/snooze", "eve", {"until": until.isoformat()}, expect=200)
    assert first not in listed(api)
    with app.app_context():
        get_redis().flushall()  # Redis restarted empty: the wake-up job is gone
    with time_machine.travel(until + timedelta(seconds=1), tick=True):
        # lists and counts already treat the snooze as over
        assert first in listed(api, query="?unread=true") and counts(api) == {"count": 3, "unseen": 3}


def test_the_sweep_wakes_overdue_snoozes_and_restores_lost_jobs_after_flushall(app, api, eve_notes, run_jobs):
    first, second, third = eve_notes
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    later = datetime.now(timezone.utc) + timedelta(days=1)
    api.post(f"/notifications/{first}/snooze", "eve", {"until": soon.isoformat()}, expect=200)
    api.post(f"/notifications/{second}/snooze", "eve", {"until": later.isoformat()}, expect=200)
    with app.app_context():
        get_redis().flushall()
    assert wake_jobs(app) == {}

    with time_machine.travel(soon + timedelta(seconds=30), tick=True):
        with app.app_context():
            wake_snoozed_sweep.enqueue()  # what the recurring "wake-snoozed" job does every minute
        run_jobs()
        rows = {n.id: n for n in api.rows(Notification)}
        assert rows[first].snoozed_until is None and not rows[first].is_read and rows[first].seen_at is None
        assert rows[second].snoozed_until is not None  # not due: asleep still, its job put back
        jobs = wake_jobs(app)
        assert list(jobs) == [f"snooze-{second}"] and abs(jobs[f"snooze-{second}"] - later.timestamp()) < 1
        with app.app_context():
            assert center.sweep_snoozes() == {"woken": 0, "rescheduled": 0}  # twice: nothing more
        assert listed(api) == [third, first]


@pytest.mark.parametrize("until, problem", [
    ({"minutes": 2}, "at least 3 minutes"),
    ({"minutes": -5}, "at least 3 minutes"),
    ({"days": 91}, "at most 90 days"),
])
def test_snooze_bounds_are_422_naming_until_and_write_nothing(app, api, eve_notes, until, problem):
    first = eve_notes[0]
    response = api.post(f"/notifications/{first}/snooze", "eve", {"until": iso_in(**until)})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert problem in response.json["error"]["fields"]["until"]
    assert first in listed(api) and wake_jobs(app) == {}


def test_snooze_refuses_times_without_an_offset_and_others_notifications(api, eve_notes):
    first = eve_notes[0]
    naive = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    for body in ({"until": naive}, {"until": "tomorrow"}, {}):
        response = api.post(f"/notifications/{first}/snooze", "eve", body)
        assert response.status_code == 422 and "until" in response.json["error"]["fields"], response.json
    assert api.post(f"/notifications/{first}/snooze", "bob", {"until": iso_in(hours=1)}).status_code == 404
    assert api.delete(f"/notifications/{first}/snooze", "bob").status_code == 404
    assert api.post(f"/notifications/{first}/snooze", "eve", {"until": iso_in(days=89)}, expect=200)
    assert api.post(f"/notifications/{first}/snooze", "eve", {"until": iso_in(minutes=3)}, expect=200)


# --- critical types ----------------------------------------------------------------------

def test_preferences_list_critical_types_and_refuse_removing_in_app(api, league):
    prefs = api.get("/preferences", "eve", expect=200).json
    assert prefs["critical"] == list(CRITICAL_TYPES)
    assert {"payout_received", "webhook_disabled", "api_token_replaced"} <= set(prefs["critical"])
    for name in CRITICAL_TYPES:
        assert "in_app" in prefs["channels"][name]

    response = api.put("/preferences", "eve", {"channels": {"payout_received": ["email"],
                                                            "match_result": ["email"]}, "opt_out_email": True})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert set(response.json["error"]["fields"]) == {"channels.payout_received"}
    assert "in_app" in response.json["error"]["fields"]["channels.payout_received"]
    after = api.get("/preferences", "eve", expect=200).json
    assert after == prefs  # nothing written, not even the valid part
    assert api.rows(NotificationPreferenceChange) == []

    # keeping in_app (and dropping email) is fine; critical is read-only (ignored? no: unknown field)
    ok = api.put("/preferences", "eve", {"channels": {"payout_received": ["in_app"]}}, expect=200).json
    assert ok["channels"]["payout_received"] == ["in_app"]
    assert api.put("/preferences", "eve", {"critical": []}).status_code == 422


def test_replacing_the_api_token_is_a_critical_notice_even_with_in_app_off(app, api, league, users, run_jobs):
    api.put("/preferences", "dee", {"opt_out_in_app": True, "channels": {"api_token_replaced": ["in_app"]}},
            expect=200)
    new_token = api.post("/me/token", "dee", expect=200).json["api_token"]
    run_jobs()
    users.tokens["dee"] = new_token
    [note] = api.get("/notifications?type=api_token_replaced", "dee", expect=200).json["items"]
    assert note["type"] == "api_token_replaced" and note["title"] == "Your API token was replaced"
    assert note["url"] == "/settings/notifications"
    assert note["seen_at"] is None and not note["is_read"]


def test_the_openapi_document_describes_the_attention_endpoints_and_fields(client):
    doc = client.get("/api/v1/openapi.json").json
    paths = doc["paths"]
    for method, path in (("post", "/notifications/seen"), ("post", "/notifications/{notification_id}/archive"),
                         ("post", "/notifications/{notification_id}/unarchive"),
                         ("post", "/notifications/{notification_id}/snooze"),
                         ("delete", "/notifications/{notification_id}/snooze")):
        operation = paths["/api/v1" + path][method]
        assert operation.get("summary") or operation.get("description"), path
    schemas = doc["components"]["schemas"]
    notification = schemas["Notification"]["properties"]
    assert {"seen_at", "read_at", "archived_at", "snoozed_until"} <= set(notification)
    assert {"count", "unseen"} <= set(schemas["Count"]["properties"])
    assert "critical" in schemas["PreferencesOut"]["properties"]
    listing = {p["name"] for p in paths["/api/v1/notifications"]["get"]["parameters"]}
    assert {"archived", "snoozed"} <= listing
    snooze_body = paths["/api/v1/notifications/{notification_id}/snooze"]["post"]["requestBody"]
    assert snooze_body["required"] is True
