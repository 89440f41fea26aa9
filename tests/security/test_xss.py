"""Stored XSS: hostile text in every free-text field stays text in the notification center,
the ops dashboard, emails (through the real SMTP stand-in) and Discord embeds (through the
real Discord stand-in), and @everyone / mentions ping nobody. Usernames refuse markup."""
from __future__ import annotations

import html
import re

import pytest

from deltacrown.notifications.types import DISCORD, EMAIL, IN_APP
from tests.api.helpers import ApiDriver, in_days

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
TEMPLATE = "{{7*7}}"
PAYLOAD = f"{SCRIPT}{IMG}{TEMPLATE} @everyone <@123>"
# markup that must never reach an HTML response unescaped
RAW_MARKERS = ("<script>alert(1)", "<img src=x", "onerror=alert(1)>", "<i>t</i>")
TYPES = ("invite_sent", "tournament_registered", "sponsor_approved", "announcement", "roster_changed")


@pytest.fixture
def app_config(smtp_server, discord_server):
    return {**smtp_server.config(), **discord_server.config(),
            "DISCORD_WEBHOOK_URL": discord_server.webhook_url(99)}


def assert_inert(page: str, where: str, must_show: bool = True):
    for marker in RAW_MARKERS:
        assert marker not in page, f"{where}: {marker!r} rendered as markup"
    if must_show:
        # the text is shown, escaped, and the template expression was not evaluated
        assert html.escape(SCRIPT, quote=False) in page or html.escape(SCRIPT) in page, \
            f"{where}: payload not shown at all"
        assert TEMPLATE in page, f"{where}: {{{{7*7}}}} missing (evaluated?)"


def test_usernames_refuse_markup(app, client, users):
    users.create("admin", admin=True)
    api = ApiDriver(app, client, users)
    for name in (SCRIPT, IMG, TEMPLATE, "@everyone"):
        response = api.post("/users", "admin", {"username": name, "email": "x@example.com",
                                                "password": "long-enough-pw"})
        assert response.status_code == 422, (name, response.status_code)
        assert "username" in response.json["error"]["fields"]


@pytest.mark.timeout(300)
def test_hostile_text_is_inert_everywhere(app, client, users, run_jobs, smtp_server, discord_server):
    api = ApiDriver(app, client, users)
    for name, admin in (("admin", True), ("ann", False), ("eve", False)):
        users.create(name, admin=admin)
    for n, name in enumerate(("ann", "eve"), start=10):
        api.put("/preferences", name, {"channels": {t: [IN_APP, EMAIL, DISCORD] for t in TYPES},
                                       "discord_webhook_url": discord_server.webhook_url(n)}, expect=200)
    team = api.post("/teams", "admin", {"name": PAYLOAD, "tag": "<i>t</i>" + TEMPLATE,
                                        "captain_id": users.ids["ann"]}, expect=201).json["id"]
    api.put(f"/teams/{team}/discord-webhook", "ann", {"url": discord_server.webhook_url(50)}, expect=200)
    api.post(f"/teams/{team}/invites", "ann", {"user_id": users.ids["eve"]}, expect=201)
    tid = api.post("/tournaments", "admin", {"name": PAYLOAD, "starts_at": in_days(3)}, expect=201).json["id"]
    api.post(f"/tournaments/{tid}/registrations", "ann", {"team_id": team}, expect=201)
    sponsor = api.post(f"/teams/{team}/sponsors", "ann", {"name": PAYLOAD, "expires_at": in_days(30)},
                       expect=201).json["id"]
    api.post(f"/sponsors/{sponsor}/approve", "admin", expect=200)
    api.post(f"/teams/{team}/promotions", "admin", {"title": PAYLOAD, "starts_at": in_days(1),
                                                   "ends_at": in_days(2)}, expect=201)
    api.post("/announcements", "admin", {"title": PAYLOAD, "body": PAYLOAD + "\n# heading\n**bold**",
                                         "url": "/notifications"}, expect=202)
    from tests.ops.jobs import fail

    with app.app_context():
        fail.enqueue(PAYLOAD)  # a failed job whose error carries the hostile text
    run_jobs()
    run_jobs()  # deliveries enqueued by the event handlers

    # --- the notification center -----------------------------------------------
    for name in ("ann", "eve"):
        client.post("/login", data={"username": name, "password": users.passwords[name]})
        page = client.get("/notifications").get_data(as_text=True)
        assert_inert(page, f"center of {name}")
        assert_inert(client.get("/notifications?unread=true").get_data(as_text=True), f"unread of {name}",
                     must_show=False)
        client.post("/logout")

    # --- the ops dashboard --------------------------------------------------------
    client.post("/login", data={"username": "admin", "password": users.passwords["admin"]})
    dashboard = client.get("/ops").get_data(as_text=True)
    assert_inert(dashboard, "ops dashboard", must_show=False)
    failed = client.get("/ops/failed").get_data(as_text=True)
    assert_inert(failed, "ops failed jobs")
    assert_inert(client.get("/ops/live").get_data(as_text=True), "ops live", must_show=False)

    # --- emails (received by the real SMTP stand-in) ----------------------------------
    mails = smtp_server.wait_for(4)
    subjects = [m.subject for m in mails]
    assert any("alert(1)" in s for s in subjects), subjects
    for mail in mails:
        assert_inert(mail.html, f"email {mail.subject!r}", must_show=False)
        assert "\n" not in mail.subject and "\r" not in mail.subject
    assert any(html.escape(SCRIPT, quote=False) in m.html for m in mails)

    # --- Discord (received by the real Discord stand-in) --------------------------------
    assert not discord_server.violations, discord_server.violations
    payloads = [p for hook in (10, 11, 50, 99) for p in discord_server.messages(hook)]
    assert len(payloads) >= 4, payloads
    assert any(r"alert\(1\)" in e.get("title", "") + e.get("description", "")
               for p in payloads for e in p["embeds"])
    for payload in payloads:
        assert payload["allowed_mentions"] == {"parse": []}, payload
        texts = [payload.get("content") or ""]
        for embed in payload["embeds"]:
            texts += [embed.get("title", ""), embed.get("description", ""),
                      (embed.get("footer") or {}).get("text", ""), (embed.get("author") or {}).get("name", "")]
            texts += [f[k] for f in embed.get("fields", []) for k in ("name", "value")]
            assert str(embed.get("url", "http")).startswith(("http://", "https://")), embed
        for text in texts:
            assert not re.search(r"@(everyone|here)", text), text  # broken by a zero-width space
            assert "<@123>" not in text, text
            # markdown neutralised: a heading or bold can not be forged by user text
            assert "**bold**" not in text and not re.search(r"(^|\n)# heading", text), text
