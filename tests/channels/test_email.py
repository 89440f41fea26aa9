"""Email through a real SMTP server on loopback: content, headers, unsubscribe, failures."""
from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import date, datetime, timezone
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import urlsplit

import flask_mail
import pytest
from flask import render_template

from deltacrown.channels import email_render
from deltacrown.channels.smtp import EmailSendError, RenderedEmail, SmtpSession, mime_message
from deltacrown.extensions import db
from deltacrown.models import Notification, NotificationPreference, NotificationPreferenceChange, User
from deltacrown.notifications import emails
from deltacrown.notifications.content import ChannelMessage
from deltacrown.notifications.emails import send_digest_email
from deltacrown.notifications.types import TYPE_NAMES
from deltacrown.notifications.unsubscribe import ALL_EMAIL
from tests.support.processes import free_port


def _unsubscribe_header_urls(mail):
    header = str(mail.message["List-Unsubscribe"])
    return re.findall(r"<([^>]+)>", header)


def test_notification_email_has_both_parts_headers_and_link_back(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("alice")
    nid = make.notification(uid, type="match_result", title="Nova 2 - 1 Eclipse", body="Quarter-final done.",
                            url="/tournaments/3#match-7")
    did = make.delivery("email", "alice@example.com", notification_id=nid, user_id=uid)
    enqueue(did)
    run_jobs()

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["alice@example.com"]
    assert "Nova 2 - 1 Eclipse" in mail.subject and "🏁" in mail.subject
    html, text = mail.html, mail.text
    assert 'href="http://localhost:5000/tournaments/3#match-7"' in html  # the action button
    assert "http://localhost:5000/settings/notifications" in html and "/unsubscribe/" in html
    assert 'style="' in html and "<style>" in html  # inlined; media queries kept for clients that read them
    assert "Nova 2 - 1 Eclipse" in text and "http://localhost:5000/tournaments/3#match-7" in text
    assert "Manage notification preferences: http://localhost:5000/settings/notifications" in text
    https_url, mailto = _unsubscribe_header_urls(mail)
    assert https_url.startswith("http://localhost:5000/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@deltacrown.local?subject=")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    d = make.get(did)
    assert (d.status, d.attempts, d.last_error) == ("sent", 1, None) and d.sent_at is not None

    # The same delivery enqueued again (a duplicate or a retry) sends nothing more.
    enqueue(did, did)
    run_jobs()
    assert len(smtp_server.messages) == 1 and make.get(did).attempts == 1


def test_payload_email_renders_from_the_payload(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("bea")
    did = make.delivery("email", "bea@example.com", user_id=uid,
                        payload={"type": "announcement", "title": "Maintenance Sunday", "body": "Offline 2-3 UTC",
                                 "url": "/news/1"})
    enqueue(did)
    run_jobs()
    [mail] = smtp_server.wait_for(1)
    assert "Maintenance Sunday" in mail.subject and "Offline 2-3 UTC" in mail.text
    assert "http://localhost:5000/news/1" in mail.html
    assert make.get(did).status == "sent"


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True  # prove the unsubscribe POST needs no session/CSRF token
    return app


def test_one_click_unsubscribe_from_the_received_email_without_a_session(
        app, csrf_on, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("cleo")
    nid = make.notification(uid, type="match_result")
    enqueue(make.delivery("email", "cleo@example.com", notification_id=nid, user_id=uid))
    run_jobs()
    [mail] = smtp_server.wait_for(1)
    path = urlsplit(_unsubscribe_header_urls(mail)[0]).path
    assert path in mail.html and path in mail.text  # the footer link is the same working link

    client = app.test_client()  # fresh: no session, no cookies, no CSRF token
    page = client.get(path)
    assert page.status_code == 200 and b"Match result" in page.data and b"<form" in page.data
    with app.app_context():
        assert db.session.query(NotificationPreferenceChange).count() == 0  # GET changed nothing

    response = client.post(path, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert b"/settings/notifications" in response.data
    with app.app_context():
        pref = db.session.query(NotificationPreference).filter_by(user_id=uid).one()
        assert "email" not in pref.get_channels_for_type("match_result")
        assert "email" in pref.get_channels_for_type("bracket_ready")  # only that type
        assert pref.opt_out_email is False
        change = db.session.query(NotificationPreferenceChange).one()
        assert change.source == "unsubscribe" and "channels.match_result" in change.changes

    # Clicking again is harmless, and the page now says it is already off.
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    again = client.get(path)
    assert again.status_code == 200 and b"already off" in again.data and b"<form" not in again.data


def test_the_notification_time_is_shown_in_the_preference_zone_else_the_account_zone(
        app, users, make, enqueue, run_jobs, smtp_server):
    from deltacrown.notifications.preferences import update_preferences

    chosen = users.create("emil", timezone="Asia/Tokyo")
    account_only = users.create("fumi", timezone="Asia/Tokyo")  # no preference row
    with app.app_context():
        update_preferences(db.session.get(User, chosen), {"timezone": "Europe/Berlin"}, "api")
    enqueue(make.delivery("email", "emil@example.com", notification_id=make.notification(chosen), user_id=chosen),
            make.delivery("email", "fumi@example.com", notification_id=make.notification(account_only),
                          user_id=account_only))
    run_jobs()
    shown = {mail.rcpt_tos[0]: re.search(r"\d\d \w{3} \d{4}, \d\d:\d\d (\S+)", mail.text).group(1)
             for mail in smtp_server.wait_for(2)}
    assert shown == {"emil@example.com": "Europe/Berlin", "fumi@example.com": "Asia/Tokyo"}


def test_digest_email_groups_by_type_and_unsubscribes_from_all(app, csrf_on, users, make, smtp_server):
    uid = users.create("dora", timezone="Europe/Berlin")
    ids = [make.notification(uid, type="match_result", title="Match one"),
           make.notification(uid, type="payout_received", title="You received 500 coins", url="/coins"),
           make.notification(uid, type="match_result", title="Match two")]
    with app.app_context():
        user = db.session.get(User, uid)
        notifications = [db.session.get(Notification, i) for i in ids]
        send_digest_email(user, date(2026, 11, 28), notifications)
    [mail] = smtp_server.wait_for(1)
    assert "28 November 2026" in mail.subject and "3 updates" in mail.subject
    text = mail.text
    assert text.index("Match result (2)") < text.index("Payout received (1)")
    assert "Match one" in mail.html and "You received 500 coins" in mail.html
    url = _unsubscribe_header_urls(mail)[0]
    response = app.test_client().post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.query(NotificationPreference).filter_by(user_id=uid).one().opt_out_email is True


def test_digest_email_raises_on_smtp_failure(app, users, make, smtp_server):
    uid = users.create("eli")
    nid = make.notification(uid)
    smtp_server.fail_temporarily = True
    with app.app_context():
        with pytest.raises(EmailSendError) as err:
            send_digest_email(db.session.get(User, uid), date(2026, 11, 28), [db.session.get(Notification, nid)])
    assert err.value.temporary and "451" in str(err.value)
    smtp_server.refuse("eli@example.com")
    smtp_server.fail_temporarily = False
    with app.app_context():
        with pytest.raises(EmailSendError) as err:
            send_digest_email(db.session.get(User, uid), date(2026, 11, 28), [db.session.get(Notification, nid)])
    assert not err.value.temporary and "550" in str(err.value)


def test_tampered_expired_or_foreign_tokens_get_a_clear_400(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("finn")
    users.create("gus")
    enqueue(make.delivery("email", "finn@example.com", notification_id=make.notification(uid), user_id=uid))
    run_jobs()
    path = urlsplit(_unsubscribe_header_urls(smtp_server.wait_for(1)[0])[0]).path
    token = path.rsplit("/", 1)[1]
    client = app.test_client()

    import base64
    import json
    payload, rest = token.split(".", 1)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["u"] = users.ids["gus"]  # someone else's id with finn's signature
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    for bad in (f"{forged}.{rest}", token[:-3] + "xyz", "not-a-token", token + "x"):
        for method in (client.get, client.post):
            response = method(f"/unsubscribe/{bad}")
            assert response.status_code == 400, bad
            assert b"not valid" in response.data and b"/settings/notifications" in response.data
    with app.app_context():
        assert db.session.query(NotificationPreferenceChange).count() == 0

    app.config["UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS"] = 1
    import time_machine
    with time_machine.travel(time.time() + 2 * 86400):
        response = client.post(path)
    assert response.status_code == 400 and b"expired" in response.data


def test_permanently_refused_recipient_bounces_at_once(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("hana")
    smtp_server.refuse("hana@example.com")
    did = make.delivery("email", "hana@example.com", notification_id=make.notification(uid), user_id=uid)
    enqueue(did)
    run_jobs()
    d = make.get(did)
    assert d.status == "bounced" and d.attempts == 1 and "550" in d.last_error
    assert smtp_server.messages == []


def test_temporary_smtp_failure_is_retried_then_delivered(app, users, make, enqueue, run_jobs, smtp_server):
    app.config["DELIVERY_RETRY_INTERVALS"] = [1, 1]
    uid = users.create("ivan")
    did = make.delivery("email", "ivan@example.com", notification_id=make.notification(uid), user_id=uid)
    smtp_server.fail_temporarily = True
    enqueue(did)
    run_jobs()
    d = make.get(did)
    assert d.status == "pending" and d.attempts == 1 and "451" in d.last_error
    smtp_server.fail_temporarily = False
    deadline = time.monotonic() + 15
    while make.get(did).status == "pending" and time.monotonic() < deadline:
        run_jobs(with_scheduler=True)  # the retry is scheduled 1 s ahead
    d = make.get(did)
    assert d.status == "sent" and d.attempts == 2
    assert len(smtp_server.wait_for(1)) == 1


def test_connection_refused_is_temporary_and_gives_up_after_the_last_try(app, users, make, enqueue, run_jobs):
    app.extensions["mail"].port = free_port()  # nobody listens there
    uid = users.create("jack")
    did = make.delivery("email", "jack@example.com", notification_id=make.notification(uid), user_id=uid)
    enqueue(did)
    run_jobs()  # intervals [0, 0]: three tries in this burst
    d = make.get(did)
    assert d.status == "failed" and d.attempts == 3
    assert "gave up after 3 attempt(s)" in d.last_error and "Connection" in d.last_error


def test_hostile_text_arrives_inert_in_email(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("kai")
    title = '<script>alert("x")</script> <img src=x onerror=alert(1)> [win](http://evil.example) @everyone'
    nid = make.notification(uid, type="announcement", title=title, body="<b>bold</b>\nline two",
                            url="javascript:alert(1)")
    enqueue(make.delivery("email", "kai@example.com", notification_id=nid, user_id=uid))
    run_jobs()
    [mail] = smtp_server.wait_for(1)
    html = mail.html
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "javascript:" not in html  # a non-http link falls back to the site
    assert "\n" not in mail.subject and "<script>" in mail.subject  # a header is text, not markup


def test_email_turned_off_after_the_delivery_was_created_is_not_sent(app, users, make, enqueue, run_jobs, smtp_server):
    uid = users.create("lia")
    did = make.delivery("email", "lia@example.com", notification_id=make.notification(uid), user_id=uid)
    with app.app_context():
        from deltacrown.notifications.preferences import update_preferences
        update_preferences(db.session.get(User, uid), {"opt_out_email": True}, "api")
    enqueue(did)
    run_jobs()
    d = make.get(did)
    assert d.status == "skipped" and "unsubscribed from all email" in d.last_error and smtp_server.messages == []


def test_admin_email_preview(app, users, auth, client):
    users.create("root", admin=True)
    users.create("pleb")
    assert client.get("/admin/email-preview").status_code in (302, 401)
    auth.login("pleb")
    assert client.get("/admin/email-preview").status_code == 403
    auth.logout()
    auth.login("root")
    response = client.get("/admin/email-preview")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("<iframe") == 1 + len(TYPE_NAMES)  # the digest and one per notification type
    assert "srcdoc=" in page and "sandbox" in page and "Daily digest" in page
    assert "Manage notification preferences: http://localhost:5000/settings/notifications" in page  # text part
    assert "&lt;Nova&gt;" in page and "<Nova>" not in page  # sample markup stays text
    assert "unsafe-inline" in response.headers["Content-Security-Policy"]


def test_a_session_sends_many_emails_over_one_connection_and_fails_only_the_bad_ones(app, smtp_server):
    rendered = RenderedEmail(subject="Hello", html="<p>hi</p>", text="hi\n")
    smtp_server.refuse("bad@example.com")
    errors = []
    with app.app_context(), SmtpSession() as session:
        session.send("a@example.com", rendered)
        for to, setup in (("bad@example.com", None), ("b@example.com", None), ("c@example.com", "451"),
                          ("d@example.com", None), ("e@example.com", "drop"), ("f@example.com", None)):
            smtp_server.fail_temporarily = setup == "451"
            smtp_server.drop_connections = 1 if setup == "drop" else 0
            try:
                session.send(to, rendered)
            except EmailSendError as exc:
                errors.append((to, exc.temporary))
    mails = smtp_server.wait_for(4)
    assert errors == [("bad@example.com", False), ("c@example.com", True), ("e@example.com", True)]
    # Refusals leave the connection in use; the server hanging up costs that one email and a reconnect.
    assert [(m.rcpt_tos, m.connection) for m in mails] == [
        (["a@example.com"], 1), (["b@example.com"], 1), (["d@example.com"], 1), (["f@example.com"], 2)]


def test_the_message_reads_like_flask_mails_and_list_unsubscribe_stays_plain(app):
    token = "eyJ1Ijo1LCJ0IjoiYWxsIn0.awvSaw.sCuG1wRuE3NBdr4iaAGjmSZOjKQ"
    rendered = RenderedEmail(
        subject="🏁 Nova 2 – 1 Eclipse, a long subject that needs more than one line when encoded " + "x" * 40,
        html="<p>Grüße</p>\n<p>" + "y" * 500 + "</p>", text="Grüße\r\nline two\n\nthree\n",
        headers={"List-Unsubscribe": f"<http://localhost:5000/unsubscribe/{token}>, "
                                     f"<mailto:unsubscribe@deltacrown.local?subject=unsubscribe%20{token}>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    sender = "Delta Crówn <noreply@deltacrown.local>"
    with app.app_context():
        raw = mime_message(flask_mail.sanitize_address(sender), "dora@example.com", rendered)
        theirs = flask_mail.Message(subject=rendered.subject, recipients=["dora@example.com"], body=rendered.text,
                                    html=rendered.html, extra_headers=dict(rendered.headers), sender=sender).as_bytes()
    ours, theirs = (email.message_from_bytes(b, policy=email.policy.default) for b in (raw, theirs))
    for name in ("Subject", "From", "To", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version"):
        assert str(ours[name]) == str(theirs[name]), name
    assert ours["Date"] and ours["Message-ID"]
    for kind in ("plain", "html"):
        assert ours.get_body((kind,)).get_content() == theirs.get_body((kind,)).get_content()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    assert b"List-Unsubscribe: <http://localhost:5000/unsubscribe/" in header_block  # no RFC 2047 words
    assert b"=?utf-8?" in header_block.split(b"\r\nFrom:")[0]  # the emoji subject is encoded
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 998


def test_a_line_break_in_an_address_is_refused_before_anything_is_sent(app, smtp_server):
    with app.app_context(), SmtpSession() as session:
        with pytest.raises(EmailSendError) as err:
            session.send("x@example.com\r\nBcc: everyone@example.com", RenderedEmail("s", "<p>h</p>", "t\n"))
    assert not err.value.temporary and "line break" in str(err.value)
    assert smtp_server.messages == []


class _Reading(HTMLParser):
    """A document as a reader gets it: elements, decoded attributes and text (entities and line ends resolved)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.events: list = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        data = data.replace("\r\n", "\n")
        if self.events and self.events[-1][0] == "text":
            self.events[-1] = ("text", self.events[-1][1] + data)
        else:
            self.events.append(("text", data))


TRICKY = "Nova's \"best\" <b>&amp;</b>\u00a0— 2 < 3 > 1\r\nsecond line"


@pytest.mark.parametrize("name", ["daily_digest", "single_notification"])
def test_css_inlined_once_per_template_reads_the_same_as_inlining_each_email(app, name):
    user = SimpleNamespace(id=7, username="o'neil", email="o@example.com", timezone="Europe/Berlin")
    items = [ChannelMessage(type=t, title=f"{TRICKY} {i}", body=TRICKY if i % 2 else "", url=f"/x?a={i}&b=\"q\"",
                            created_at=datetime(2026, 3, 4, 12, i, tzinfo=timezone.utc))
             for i, t in enumerate(["match_result", "announcement", "payout_received", "match_result"])]
    with app.app_context():
        email_render._preinlined.clear()
        context, _ = emails._common_context(user, ALL_EMAIL)
        if name == "daily_digest":
            context.update(groups=emails.group_by_type(items), count=len(items), date_label="Wednesday")
        else:
            context.update(item=items[1], action_label="View", when="4 Mar 2026, 13:01 Europe/Berlin")
        context["subject"] = f"Subject {TRICKY}"
        template = f"{emails.TEMPLATE_DIR}/{name}.html"
        fast = email_render._render_html(template, dict(context))
        assert email_render._preinlined[app.jinja_env][template][0] is not None  # the once-per-template path ran
        slow = email_render._inliner.inline(render_template(template, **context))
    assert 'style="' in fast and "<style>" in fast  # inlined; media queries kept
    assert _Reading(fast).events == _Reading(slow).events


def test_a_template_the_parser_would_rearrange_is_inlined_per_email(app):
    from jinja2 import DictLoader, Environment

    env = Environment(loader=DictLoader({
        "moved.html": "<style>td{color:red}</style><table>{% for r in rows %}<tr><td>{{ r }}</td></tr>{% endfor %}"
                      "</table>",
        "fine.html": "<style>p{color:red}</style><div>{% for r in rows %}<p>{{ r }}</p>{% endfor %}</div>",
        "child.html": '{% extends "fine.html" %}{% block nope %}x{% endblock %}',
    }), autoescape=True)
    assert email_render._preinline(env, "moved.html")[0] is None  # the loop text is foster-parented out of the table
    assert email_render._preinline(env, "child.html")[0] is None  # a block the parent does not have
    fine = email_render._preinline(env, "fine.html")[0]
    assert fine.render(rows=["a", "b"]).count('<p style="color: red;">') == 2
