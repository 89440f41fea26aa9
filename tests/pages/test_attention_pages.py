"""Attention on the player's pages, without a browser (issue 16, items 1, 2, 4 and 7's
"How to reach me"): the center marks what it renders seen, archives and snoozes from an
item's menu (htmx and plain forms), and the editor locks critical types' in-app box."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.models import Notification, NotificationPreference, NotificationPreferenceChange
from deltacrown.notifications.types import CRITICAL_TYPES, NOTIFICATION_TYPES
from deltacrown.queue import get_redis

from .conftest import HX
from .test_settings import full_form


def _note(app, nid) -> Notification:
    with app.app_context():
        note = db.session.get(Notification, nid)
        db.session.expunge(note)
        return note


def _badge(client) -> int:
    html = client.get("/notifications/badge", headers=HX).get_data(as_text=True)
    return int(re.search(r'data-count="(\d+)"', html).group(1))


def _ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="notification-(\d+)"', html)]


def test_the_center_marks_what_it_shows_seen_and_the_badge_counts_unseen(app, client, alice, notify):
    ids = notify(alice, 25)  # more than one page
    assert _badge(client) == 25
    response = client.get("/notifications", headers=HX)
    assert response.headers["HX-Trigger"] == "refreshBadge"  # the badge follows at once
    shown = _ids_in(response.get_data(as_text=True))
    assert len(shown) == 20
    assert _badge(client) == 5
    assert all(_note(app, i).seen_at is not None for i in shown)
    assert all(not _note(app, i).is_read for i in shown)  # seen, still unread
    assert _note(app, ids[0]).seen_at is None  # not shown yet: still unseen
    # again: nothing new to see, nothing to refresh
    assert "HX-Trigger" not in client.get("/notifications", headers=HX).headers


def _menu(client, nid, query="") -> str:
    """An item's menu, as htmx loads it when "More" is opened."""
    response = client.get(f"/notifications/{nid}/menu{query}", headers=HX)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_archive_from_the_menu_with_htmx_and_the_archived_box(app, client, alice, notify):
    first, second = notify(alice, 2)
    page = client.get("/notifications").get_data(as_text=True)
    item = page[page.index(f'id="notification-{second}"'):]
    assert ">More<" in item and f'hx-get="/notifications/{second}/menu"' in item
    menu = _menu(client, second)
    assert ">Archive<" in menu and "Remind me later" in menu and "MUTE" not in menu
    response = client.post(f"/notifications/{second}/archive", data={"next": "/notifications"}, headers=HX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "refreshBadge"
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<li id="notification-{second}"') and "Archived" in html and ">Undo<" in html
    assert _note(app, second).archived_at is not None
    assert _ids_in(client.get("/notifications").get_data(as_text=True)) == [first]
    archived = client.get("/notifications?show=archived").get_data(as_text=True)
    assert _ids_in(archived) == [second]
    assert "Move back to notifications" in _menu(client, second, "?show=archived")
    # "Clear all read ones" in the inbox keeps archived ones (put away to be kept)
    client.post(f"/notifications/{second}/read", headers=HX)
    client.post(f"/notifications/{first}/read", headers=HX)
    cleared = client.post("/notifications/clear-read", headers=HX).get_data(as_text=True)
    assert "Cleared 1 read notification." in cleared and _ids_in(cleared) == []
    assert _ids_in(client.get("/notifications?show=archived").get_data(as_text=True)) == [second]
    # undo (unarchive), without JavaScript this time: back to the page it came from
    response = client.post(f"/notifications/{second}/unarchive", data={"next": "/notifications?show=archived"})
    assert response.status_code == 303 and response.headers["Location"] == "/notifications?show=archived"
    assert _ids_in(client.get("/notifications").get_data(as_text=True)) == [second]


def test_remind_me_later_choices(app, client, alice, notify, users, auth):
    with app.app_context():
        pref = NotificationPreference.get_or_create_for_user(db.session.get(__import__(
            "deltacrown.accounts.models", fromlist=["User"]).User, alice))
        pref.timezone = "Asia/Tokyo"
        db.session.commit()
    ids = notify(alice, 4)
    # 20:30 UTC two days from now: 05:30 the next day in Tokyo (no DST there)
    now = (datetime.now(timezone.utc) + timedelta(days=2)).replace(hour=20, minute=30, second=0, microsecond=0)
    local_day = now.astimezone(ZoneInfo("Asia/Tokyo")).date()
    with time_machine.travel(now, tick=False):
        auth.login("alice")  # a session of that time
        for nid, choice in zip(ids, ("1h", "3h", "tomorrow")):
            response = client.post(f"/notifications/{nid}/snooze", data={"choice": choice}, headers=HX)
            assert response.status_code == 200, response.get_data(as_text=True)
            assert "Snoozed" in response.get_data(as_text=True) and ">Undo<" in response.get_data(as_text=True)
        response = client.post(f"/notifications/{ids[3]}/snooze",
                               data={"choice": "at", "at": f"{local_day + timedelta(days=3)}T18:45"})
        assert response.status_code == 303
        bad = client.post(f"/notifications/{ids[0]}/snooze", data={"choice": "at", "at": f"{local_day}T05:31"},
                          headers=HX)
        assert bad.status_code == 422 and "at least 3 minutes" in bad.get_data(as_text=True)
        nonsense = client.post(f"/notifications/{ids[0]}/snooze", data={"choice": "at", "at": "soon"}, headers=HX)
        assert nonsense.status_code == 422
        assert client.get("/notifications").get_data(as_text=True).count('class="notification ') == 0
    auth.login("alice")
    tokyo = ZoneInfo("Asia/Tokyo")
    untils = [_note(app, nid).snoozed_until for nid in ids]
    assert untils[0] == now + timedelta(hours=1) and untils[1] == now + timedelta(hours=3)
    tomorrow = local_day + timedelta(days=1)
    assert untils[2].astimezone(tokyo) == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=tokyo)
    chosen = local_day + timedelta(days=3)
    assert untils[3].astimezone(tokyo) == datetime(chosen.year, chosen.month, chosen.day, 18, 45, tzinfo=tokyo)
    with app.app_context():
        jobs = {k.decode() for k in get_redis().zrange("rq:scheduler:scheduled_jobs", 0, -1)}
    assert jobs == {f"snooze-{nid}" for nid in ids}
    snoozed = client.get("/notifications?show=snoozed").get_data(as_text=True)
    assert _ids_in(snoozed) == list(reversed(ids)) and "Show it again now" in _menu(client, ids[0], "?show=snoozed")
    response = client.post(f"/notifications/{ids[0]}/unsnooze", headers=HX)
    assert response.status_code == 200 and _note(app, ids[0]).snoozed_until is None


def test_an_items_menu_is_loaded_when_opened_and_is_a_page_without_javascript(app, client, alice, notify):
    ids = notify(alice, 3)
    page = client.get("/notifications?type=announcement").get_data(as_text=True)
    # Not rendered for every item of the page: each item carries where to load it from,
    # the list's filters included, as htmx's request and as a link for browsers without it.
    assert "Remind me later" not in page and page.count('class="n-menu-link"') == 3
    url = f"/notifications/{ids[0]}/menu?type=announcement"
    item = page[page.index(f'id="notification-{ids[0]}"'):]
    assert f'hx-get="{url}" hx-trigger="toggle once"' in item and f'href="{url}"' in item
    menu = _menu(client, ids[0], "?type=announcement")
    assert "<html" not in menu and "Remind me later" in menu and ">Archive<" in menu
    assert menu.count('name="next" value="/notifications?type=announcement"') == 2  # back to that list
    # Without JavaScript: the item on a page of its own, its menu open, a way back.
    full = client.get(url)
    html = full.get_data(as_text=True)
    assert full.status_code == 200 and "<html" in html and f'id="notification-{ids[0]}"' in html
    assert '<details class="n-menu" open>' in html and ">Archive<" in html
    assert 'href="/notifications?type=announcement">Back to notifications' in html
    done = client.post(f"/notifications/{ids[0]}/archive", data={"next": "/notifications?type=announcement"})
    assert done.status_code == 303 and done.headers["Location"] == "/notifications?type=announcement"
    assert _note(app, ids[0]).archived_at is not None
    # Opening a menu changes nothing: the others stay unread and in the list.
    assert not _note(app, ids[1]).is_read and _note(app, ids[1]).archived_at is None


def test_someone_elses_notification_is_404_from_the_menu(app, client, alice, notify, users):
    bob = users.create("bob")
    (bobs,) = notify(bob, 1)
    assert client.get(f"/notifications/{bobs}/menu", headers=HX).status_code == 404
    assert client.get(f"/notifications/{bobs}/menu").status_code == 404
    for action, data in (("archive", {}), ("unarchive", {}), ("snooze", {"choice": "1h"}), ("unsnooze", {})):
        assert client.post(f"/notifications/{bobs}/{action}", data=data, headers=HX).status_code == 404
    note = _note(app, bobs)
    assert note.archived_at is None and note.snoozed_until is None


def test_how_to_reach_me_locks_critical_in_app_boxes_with_the_reason(app, client, alice):
    html = client.get("/settings/notifications").get_data(as_text=True).replace("&#39;", "'")
    reach = html[html.index('<section id="reach"'):html.index("</section>", html.index('<section id="reach"'))]
    assert "How to reach me" in reach
    for name in CRITICAL_TYPES:
        t = NOTIFICATION_TYPES[name]
        assert f'id="ch-{name}-in_app" checked disabled' in reach
        assert f'<input type="hidden" name="channels.{name}" value="in_app">' in reach
        assert t.critical_reason in reach
        # its other channels stay the player's choice
        assert f'id="ch-{name}-email" name="channels.{name}" value="email"' in reach
    assert 'id="ch-match_result-in_app" name="channels.match_result" value="in_app"' in reach

    # saving what the page sends keeps in_app, and the change is logged
    form = full_form(**{"channels.payout_received": ["in_app"], "channels.match_result": ["email"]})
    assert client.post("/settings/notifications", data=form, headers=HX).status_code == 200
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == alice))
        assert pref.channels["payout_received"] == ["in_app"] and pref.channels["match_result"] == ["email"]
        [change] = db.session.scalars(select(NotificationPreferenceChange)).all()
        assert change.source == "editor" and set(change.changes) == {"channels.payout_received",
                                                                     "channels.match_result"}

    # a form without the locked box (an old page, a hand-made post) cannot switch it off
    forged = full_form(**{"channels.webhook_disabled": ["email"], "channels.match_result": ["in_app"]})
    response = client.post("/settings/notifications", data=forged, headers=HX)
    assert response.status_code == 200
    with app.app_context():
        channels = db.session.scalar(select(NotificationPreference.channels)
                                     .where(NotificationPreference.user_id == alice))
        assert channels["webhook_disabled"] == ["in_app", "email"] and channels["match_result"] == ["in_app"]
