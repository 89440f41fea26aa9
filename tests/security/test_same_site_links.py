"""Redirect targets (login's `next`, "mark read" forms) and notification links only ever
lead to a path on this site.

Browsers read `\\` as `/`, drop tabs and newlines inside URLs, and resolve `//host`
as another host, so `/\\evil.example` or `/\\t/evil.example` would leave the site
although Python's urlsplit sees a path. Such targets are refused wherever a link or
redirect is built: the login redirect, opening a notification, announcements sent
through the API, and the links in emails and Discord posts.
"""
from __future__ import annotations

from urllib.parse import unquote, urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltacrown.notifications.content import absolute_url
from deltacrown.extensions import db
from deltacrown.notifications.models import Notification

SITE = "https://site.example"

OFF_SITE = [
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "\\/evil.example", "/\\/evil.example",
    "/%5Cevil.example", "/%5cevil.example", "%2F%2Fevil.example", "/%2F/evil.example", "/%2f%2fevil.example",
    "http://evil.example", "https:evil.example", "HTTPS://evil.example/", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,hi", "evil.example", "teams/1",
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", " //evil.example",
    "/\x00/teams", "/teams/1\x7f", "/%09/evil.example", "/%0d%0aSet-Cookie:%20a=1", "/\u2028/evil.example",
    "/\u202e/evil.example", "/ /evil.example", "",
]
SAME_SITE = ["/", "/teams/7", "/notifications?unread=1", "/tournaments/3#match-5", "/me/teams",
             "/notifications?type=team_invite&cursor=MTA", "/settings/notifications?next=%2Fteams%2F1", "/notifications?q=spring%20cup"]


def same_site_path(value):
    from deltacrown.links import same_site_path as check

    return check(value)


@pytest.mark.parametrize("target", OFF_SITE)
def test_off_site_targets_are_refused(target):
    assert same_site_path(target) is None


@pytest.mark.parametrize("target", SAME_SITE)
def test_site_paths_are_kept(target):
    assert same_site_path(target) == target


def resolves_on_site(target: str) -> bool:
    # What a browser does on top of urljoin: `\` counts as `/`, tabs and newlines are dropped.
    for form in (target, target.replace("\\", "/"), "".join(c for c in target if c not in "\t\n\r"),
                 unquote(target)):
        joined = urlsplit(urljoin(SITE + "/a/b", form))
        if (joined.scheme, joined.netloc) != ("https", "site.example"):
            return False
    return True


TRICKY = st.lists(st.sampled_from(list("/\\:.%@?#=&aZ5cC2Ff09 \t\n\r\x00\x7f\u2028") + ["%5C", "%2F", "//"]),
                  max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(TRICKY, st.text(max_size=30), st.just("/").flatmap(lambda s: TRICKY.map(lambda t: s + t))))
def test_whatever_is_accepted_stays_on_the_site(target):
    kept = same_site_path(target)
    if kept is None:
        return
    assert kept == target
    assert resolves_on_site(target)
    assert not any(ord(c) < 0x21 or 0x7f <= ord(c) <= 0x9f or c == "\\" for c in target)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c == "\\" for c in unquote(target))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[A-Za-z0-9_.~-]{1,12}", fullmatch=True), max_size=4),
       st.from_regex(r"([a-z_]{1,8}=[A-Za-z0-9%]{0,8}&?){0,3}", fullmatch=True))
def test_ordinary_site_paths_are_accepted(segments, query):
    path = "/" + "/".join(segments) + (f"?{query}" if query else "")
    if any(s in ("", ".", "..") for s in segments) or "%" in query:
        return
    assert same_site_path(path) == path


@pytest.fixture(scope="module")
def blank_page(browser):
    page = browser.new_page()
    yield page
    page.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.one_of(TRICKY.map(lambda t: "/" + t), st.sampled_from(SAME_SITE)))
def test_a_real_browser_resolves_every_accepted_target_on_the_site(blank_page, target):
    """Chromium's own URL parser has the last word on where a Location or href leads."""
    if same_site_path(target) is None:
        return
    origin = blank_page.evaluate("([t, base]) => new URL(t, base).origin", [target, SITE + "/a/b"])
    assert origin == SITE


def test_the_browser_would_indeed_leave_the_site_for_the_refused_ones(blank_page):
    leaving = [t for t in OFF_SITE if t.startswith(("/", "\\", "\t", " ", "h", "H"))
               and blank_page.evaluate("([t, base]) => new URL(t, base).origin", [t, SITE + "/a/b"]) != SITE]
    assert {"//evil.example", "/\\evil.example", "/\t/evil.example", "\\\\evil.example"} <= set(leaving)


# --- where links and redirects are made ------------------------------------------------

@pytest.mark.parametrize("target", OFF_SITE[:24])
def test_login_does_not_redirect_off_site(app, users, target):
    users.create("erin")
    response = app.test_client().post("/login", query_string={"next": target},
                                      data={"username": "erin", "password": users.passwords["erin"]})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("target", SAME_SITE)
def test_login_returns_to_a_site_path(app, users, target):
    users.create("erin")
    response = app.test_client().post("/login", query_string={"next": target},
                                      data={"username": "erin", "password": users.passwords["erin"]})
    assert response.status_code == 302 and response.headers["Location"] == target


def notification(app, user_id, url):
    with app.app_context():
        n = Notification(user_id=user_id, type="announcement", title="Hello", url=url)
        db.session.add(n)
        db.session.commit()
        return n.id


@pytest.mark.parametrize("url,expected", [(t, "/notifications") for t in OFF_SITE[:14] if t]
                         + [("/teams/7", "/teams/7"), (SITE + "/teams/7", "/teams/7"),
                            (SITE + "/\\evil.example", "/notifications")])
def test_opening_a_notification_follows_only_site_links(app, client, users, auth, url, expected):
    app.config["PUBLIC_BASE_URL"] = SITE
    uid = users.create("alice")
    auth.login("alice")
    response = client.post(f"/notifications/{notification(app, uid, url)}/open")
    assert response.status_code == 303 and response.headers["Location"] == expected


@pytest.mark.parametrize("url", ["/\\evil.example", "https://evil.example/", "/%5Cevil.example", "/\t/x",
                                 "javascript:alert(1)"])
def test_announcements_with_an_off_site_link_are_422(app, client, users, url):
    users.create("admin", admin=True)
    response = client.post("/api/v1/announcements", json={"title": "Hi", "url": url}, headers=users.headers("admin"))
    assert response.status_code == 422
    assert "url" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("url,expected", [
    ("/teams/7", SITE + "/teams/7"), (SITE + "/teams/7", SITE + "/teams/7"), (None, SITE + "/notifications"),
    ("https://evil.example/phish", SITE + "/notifications"), ("/\\evil.example", SITE + "/notifications"),
    ("/%5Cevil.example", SITE + "/notifications"), ("/\t/evil.example", SITE + "/notifications"),
])
def test_email_and_discord_links_lead_only_to_the_site(app, url, expected):
    app.config["PUBLIC_BASE_URL"] = SITE
    with app.app_context():
        assert absolute_url(url) == expected
