"""The notification center and the nav badge, without a browser: full pages,
htmx partials, the no-JavaScript flows, and other players' ids."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.models import (
    Delivery,
    Notification,
    NotificationPreference,
)
from deltacrown.notifications.views import PAGE_SIZE, exact_time, relative_time

from .conftest import HX


def _notification(app, nid):
    with app.app_context():
        return db.session.get(Notification, nid)


def _next_of(login_url: str) -> str:
    parts = urlsplit(login_url)
    assert parts.path == "/login"
    return parse_qs(parts.query)["next"][0]


def _ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="notification-(\d+)"', html)]


def test_logged_out_player_goes_to_login_and_back(client, users):
    users.create("alice")
    response = client.get("/notifications?unread=1")
    assert response.status_code == 302
    assert _next_of(response.headers["Location"]) == "/notifications?unread=1"
    # htmx (the badge polling after the session ended): navigate, don't swap a login page in
    response = client.get("/notifications/badge", headers={**HX, "HX-Current-URL": "http://localhost/settings/notifications"})
    assert _next_of(response.headers["HX-Redirect"]) == "/settings/notifications"
    assert response.get_data(as_text=True) == ""
    # and after logging in, the player lands where they were going
    response = client.post("/login?next=/notifications", data={"username": "alice", "password": "alice-password"})
    assert response.headers["Location"] == "/notifications"


def test_center_lists_own_notifications_newest_first(client, alice, users, notify):
    bob = users.create("bob")
    old, new = notify(alice, 2, type="match_result")
    (read_one,) = notify(alice, 1, type="payout_received", is_read=True)
    (bobs,) = notify(bob, 1, title="for bob only")
    html = client.get("/notifications").get_data(as_text=True)
    assert _ids_in(html) == [read_one, new, old]
    assert "for bob only" not in html and f"notification-{bobs}" not in html
    # unread: a class, bold (CSS) and a "New" label in text; read: a "Read" note
    unread_item = html[html.index(f'id="notification-{new}"'):html.index(f'id="notification-{old}"')]
    assert "is-unread" in unread_item and ">New<" in unread_item and "🏁" in unread_item
    read_item = html[html.index(f'id="notification-{read_one}"'):html.index(f'id="notification-{new}"')]
    assert "is-read" in read_item and "New" not in read_item and "🪙" in read_item
    # the badge in the nav bar counts the unseen ones: showing them here made them seen
    assert 'data-count="0"' in html
    assert "is-fresh" in unread_item and "is-fresh" not in read_item  # shown for the first time


def test_user_text_is_escaped(client, alice, notify):
    notify(alice, title="<script>alert(1)</script>", body="<img src=x onerror=alert(1)>", url="/teams/1")
    html = client.get("/notifications").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_empty_states(client, alice, notify):
    html = client.get("/notifications").get_data(as_text=True)
    assert "all caught up" in html and 'id="notification-items"' not in html
    notify(alice, type="announcement")
    html = client.get("/notifications?type=match_result").get_data(as_text=True)
    assert "No notifications match these filters" in html


def test_filters_by_type_and_unread(client, alice, notify):
    (match,) = notify(alice, type="match_result")
    (match_read,) = notify(alice, type="match_result", is_read=True)
    (payout,) = notify(alice, type="payout_received")
    assert _ids_in(client.get("/notifications?type=match_result").get_data(as_text=True)) == [match_read, match]
    assert _ids_in(client.get("/notifications?unread=1").get_data(as_text=True)) == [payout, match]
    assert _ids_in(client.get("/notifications?type=match_result&unread=1").get_data(as_text=True)) == [match]
    # htmx filter change: only the list region comes back
    response = client.get("/notifications?type=payout_received", headers={**HX, "HX-Target": "notification-region"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and html.lstrip().startswith('<section id="notification-region"')
    assert 'hx-get="/notifications?type=payout_received" hx-trigger="notificationsArrived from:body"' in html
    assert _ids_in(html) == [payout]


def test_unknown_type_filter_is_a_clear_message(client, alice, notify):
    notify(alice)
    response = client.get("/notifications?type=nonsense")
    assert response.status_code == 400
    assert "no notification type called “nonsense”" in response.get_data(as_text=True)


def test_load_more_uses_keyset_pages(app, client, alice, notify, count_queries):
    ids = notify(alice, PAGE_SIZE + 5)
    with count_queries() as first:
        html = client.get("/notifications").get_data(as_text=True)
    assert _ids_in(html) == ids[::-1][:PAGE_SIZE]
    more = re.search(r'id="load-more".*?href="([^"]+)"', html, re.S).group(1).replace("&amp;", "&")
    with count_queries() as second:
        response = client.get(more, headers={**HX, "HX-Target": "load-more"})
    part = response.get_data(as_text=True)
    # just the next items (appended in place of the button), no page, no further button
    assert "<html" not in part and 'id="notification-region"' not in part
    assert _ids_in(part) == ids[::-1][PAGE_SIZE:]
    assert 'id="load-more"' not in part
    # one statement per page whatever its depth; never an OFFSET scan
    assert second.count <= first.count
    # (SQLite's dialect always writes "LIMIT ? OFFSET ?" with 0; the page itself is keyed on id)
    assert any("notifications.id <" in s for s in second.statements)
    # without JavaScript the same link is a full page of older ones
    html = client.get(more).get_data(as_text=True)
    assert "<html" in html and _ids_in(html) == ids[::-1][PAGE_SIZE:] and "Back to the newest" in html


def test_bad_cursor_shows_newest_with_a_message(client, alice, notify):
    notify(alice, 2)
    response = client.get("/notifications?cursor=%%%garbage")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "not valid any more" in html and len(_ids_in(html)) == 2


def test_query_count_does_not_grow_with_the_page(client, alice, notify, count_queries):
    notify(alice, 2)
    with count_queries() as few:
        client.get("/notifications")
    notify(alice, PAGE_SIZE, type="payout_received")
    with count_queries() as many:
        client.get("/notifications")
    assert many.count == few.count


def test_a_page_already_seen_costs_three_statements(client, alice, notify, count_queries):
    """The logged-in user, the page, and the badge's count with the player's zone in one:
    every page of the center pays these, so none more."""
    notify(alice, PAGE_SIZE + 3)
    client.get("/notifications")  # marks the page seen
    with count_queries() as seen:
        html = client.get("/notifications").get_data(as_text=True)
    assert seen.count == 3, seen.statements
    assert 'data-count="3"' in html  # the three below this page are still unseen


def test_a_page_seen_first_reads_its_items_once_and_shows_them_seen_after(app, client, alice, notify,
                                                                         count_queries):
    """Marking the page seen is one UPDATE; the page does not read its items again after it
    (its commit re-reads only the logged-in user, for the nav bar)."""
    ids = notify(alice, 3)
    with count_queries() as first:
        html = client.get("/notifications").get_data(as_text=True)
    shown = [s[:120] for s in first.statements]
    assert sum(s.startswith("SELECT notifications.id") for s in first.statements) == 1, shown
    assert sum(s.startswith("UPDATE notifications") for s in first.statements) == 1, shown
    assert first.count == 5, shown
    assert html.count('data-seen="no"') == 3 and all(_notification(app, i).seen_at for i in ids)
    html = client.get("/notifications").get_data(as_text=True)
    assert html.count('data-seen="yes"') == 3 and 'data-seen="no"' not in html


def test_mark_one_read_with_htmx_swaps_the_item_and_refreshes_badge(app, client, alice, notify):
    (nid,) = notify(alice)
    response = client.post(f"/notifications/{nid}/read", headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "refreshBadge"
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<li id="notification-{nid}"') and "is-read" in html
    n = _notification(app, nid)
    assert n.is_read and n.read_at is not None
    assert client.get("/notifications/badge?shown=1").get_data(as_text=True).count('data-count="0"') == 1


def test_mark_one_read_without_js_redirects_back(app, client, alice, notify):
    (nid,) = notify(alice)
    response = client.post(f"/notifications/{nid}/read", data={"next": "/notifications?unread=1"})
    assert response.status_code == 303 and response.headers["Location"] == "/notifications?unread=1"
    assert _notification(app, nid).is_read
    # an off-site "next" is ignored
    (other,) = notify(alice)
    response = client.post(f"/notifications/{other}/read", data={"next": "https://evil.example/"})
    assert response.headers["Location"] == "/notifications"


def test_opening_marks_read_and_follows_the_link(app, client, alice, notify):
    (nid,) = notify(alice, url="/teams/7")
    response = client.post(f"/notifications/{nid}/open")
    assert response.status_code == 303 and response.headers["Location"] == "/teams/7"
    assert _notification(app, nid).is_read
    # a link off this site is not followed
    (offsite,) = notify(alice, url="https://evil.example/phish")
    assert client.post(f"/notifications/{offsite}/open").headers["Location"] == "/notifications"


@pytest.mark.parametrize("action", ["read", "open"])
def test_someone_elses_notification_is_404_and_unchanged(app, client, alice, users, notify, action):
    bob = users.create("bob")
    (bobs,) = notify(bob, url="/teams/1")
    for headers in ({}, HX):
        response = client.post(f"/notifications/{bobs}/{action}", headers=headers)
        assert response.status_code == 404
    assert client.post(f"/notifications/999999/{action}").status_code == 404
    assert not _notification(app, bobs).is_read


def test_mark_all_read_and_clear_read(app, client, alice, users, notify):
    bob = users.create("bob")
    mine = notify(alice, 3)
    (bobs,) = notify(bob)
    response = client.post("/notifications/read-all", headers=HX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "refreshBadge"
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="notification-region"') and "Marked 3 notifications as read" in html
    assert all(_notification(app, i).is_read for i in mine)
    assert not _notification(app, bobs).is_read

    with app.app_context():  # a delivery hangs off one of them: cleared with it, on every database
        db.session.add(Delivery(dedup_key="t:1", notification_id=mine[0], user_id=alice, channel="email",
                                target="alice@example.com", status="sent"))
        db.session.commit()
    response = client.post("/notifications/clear-read", headers=HX)
    assert "Cleared 3 read notifications" in response.get_data(as_text=True)
    assert "all caught up" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Notification.id)).all() == [bobs]
        assert db.session.scalars(select(Delivery)).all() == []


def test_bulk_actions_without_js_and_scoped_to_the_type_filter(app, client, alice, notify):
    (match,) = notify(alice, type="match_result")
    (payout,) = notify(alice, type="payout_received")
    response = client.post("/notifications/read-all", data={"type": "match_result"})
    assert response.status_code == 303 and response.headers["Location"] == "/notifications?type=match_result"
    assert _notification(app, match).is_read and not _notification(app, payout).is_read
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Marked 1 notification as read" in page
    response = client.post("/notifications/clear-read", data={"type": "payout_received"})
    assert response.status_code == 303
    assert _notification(app, match) is not None  # read, but another type: kept
    # a forged type changes nothing
    response = client.post("/notifications/read-all", data={"type": "bogus"}, headers=HX)
    assert response.status_code == 422 and "nothing was changed" in response.get_data(as_text=True)
    assert not _notification(app, payout).is_read


def test_badge_partial(client, alice, notify):
    notify(alice, 3)
    notify(alice, 1, is_read=True)
    response = client.get("/notifications/badge", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'data-count="3"' in html and ">3<" in html and " new" in html
    assert response.headers["Cache-Control"] == "no-store"
    assert 'name="shown" value="3"' in html  # the poller sends back what it shows
    # more than the page shows: the open center is told to put the new ones on top
    assert client.get("/notifications/badge?shown=2", headers=HX).headers["HX-Trigger"] == "notificationsArrived"
    for shown in ("4", "", "x"):
        response = client.get(f"/notifications/badge?shown={shown}", headers=HX)
        assert response.status_code == 200 and "HX-Trigger" not in response.headers
    # unchanged: nothing to swap
    response = client.get("/notifications/badge?shown=3", headers=HX)
    assert response.status_code == 204 and response.get_data() == b""


def test_badge_stops_counting_at_99_plus_but_the_api_count_is_exact(app, client, alice, notify, users):
    notify(alice, 150)
    html = client.get("/notifications/badge", headers=HX).get_data(as_text=True)
    assert ">99+<" in html and 'data-count="100"' in html  # counted up to the cap, no further
    page = client.get("/notifications").get_data(as_text=True)
    assert ">99+<" in page  # the page showed (and so made seen) its first 20 only
    answer = app.test_client().get("/api/v1/notifications/unread-count", headers=users.headers("alice"))
    assert answer.json == {"count": 150, "unseen": 150 - PAGE_SIZE}


def test_times_are_relative_in_the_players_zone_with_exact_time(app, client, alice, notify):
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert relative_time(datetime(2026, 11, 29, 11, 59, 40, tzinfo=timezone.utc), berlin, now) == "just now"
    assert relative_time(datetime(2026, 11, 29, 11, 55, tzinfo=timezone.utc), berlin, now) == "5 min ago"
    assert relative_time(datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc), berlin, now) == "3 h ago"
    # 23:30 UTC on the 28th is already the 29th in Berlin: "today", not "yesterday"
    assert relative_time(datetime(2026, 11, 28, 23, 30, tzinfo=timezone.utc), berlin, now) == "12 h ago"
    assert relative_time(datetime(2026, 11, 28, 13, 0, tzinfo=timezone.utc), berlin, now) == "yesterday at 14:00"
    assert relative_time(datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc), berlin, now) == "Wed at 09:00"
    assert relative_time(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc), berlin, now) == "2 Mar at 09:00"
    assert relative_time(datetime(2025, 3, 2, 8, 0, tzinfo=timezone.utc), berlin, now) == "2 Mar 2025"
    assert exact_time(now, berlin) == "Sun 29 Nov 2026, 13:00 CET (Europe/Berlin)"
    # the page uses the preference's zone (falling back to the account's)
    notify(alice)
    assert "(UTC)" in client.get("/notifications").get_data(as_text=True)
    with app.app_context():
        db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == alice)
                          ).timezone = "Asia/Tokyo"
        db.session.commit()
    html = client.get("/notifications").get_data(as_text=True)
    assert re.search(r'<time datetime="[^"]+\+00:00" title="[^"]+ JST \(Asia/Tokyo\)">', html)


def test_links_follow_the_prefix_the_app_is_served_under(client, alice, notify):
    """Links built once and remembered (the nav bar's, the items' forms) are remembered per
    prefix: behind a proxy that mounts the app under /dc they carry it, and not otherwise."""
    (nid,) = notify(alice)
    plain = client.get("/notifications").get_data(as_text=True)
    mounted = client.get("/notifications", base_url="http://localhost/dc").get_data(as_text=True)
    again = client.get("/notifications").get_data(as_text=True)
    for html, prefix in ((plain, ""), (mounted, "/dc"), (again, "")):
        assert f'href="{prefix}/settings/notifications"' in html
        assert f'href="{prefix}/static/style.css"' in html
        assert f'action="{prefix}/notifications/{nid}/read"' in html
        assert f'href="{prefix}/notifications/{nid}/menu"' in html
    assert "/dc/" not in plain and "/dc/" not in again


def test_prefixes_made_up_by_clients_do_not_grow_the_remembered_urls(app, client, alice, notify, monkeypatch):
    """A proxy that passes on whatever prefix a client sends must not grow the memory: past
    its bound the remembered URLs start over, and every page still carries its own prefix."""
    import deltacrown
    from deltacrown.notifications import views

    monkeypatch.setattr(deltacrown, "REMEMBERED_URLS_MAX", 30)
    monkeypatch.setattr(views, "ITEM_URLS_MAX", 3)
    (nid,) = notify(alice)
    for k in range(8):
        html = client.get("/notifications", base_url=f"http://localhost/p{k}").get_data(as_text=True)
        assert f'href="/p{k}/settings/notifications"' in html and f'href="/p{k}/notifications/{nid}/menu"' in html
    assert len(app.jinja_env.globals["url_for"].remembered) <= 30
    assert len(app.extensions["notification_item_urls"]) <= 3
