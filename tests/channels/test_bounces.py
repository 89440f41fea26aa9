"""Bounces, complaints and the suppression list, against the real aiosmtpd stand-in.

Reports are built here with the `email` package as a receiving server or a mailbox provider
writes them (RFC 3464 multipart/report delivery-status; RFC 5965 feedback-report), and come
back by both paths: a Maildir / mbox / .eml read by `flask process-bounces`, and POST
/api/v1/email-events. Every path is checked for exactly-once and no-resend.
"""
from __future__ import annotations

import email
import email.policy
import mailbox
from datetime import date, time, timedelta
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import re

import pytest
from sqlalchemy import func, select

from deltacrown.extensions import db
from deltacrown.models import Delivery, NotificationPreference
from deltacrown.notifications import mail_headers
from deltacrown.notifications.delivery_jobs import send_deliveries
from deltacrown.notifications.models import EmailEvent, EmailSuppression, NotificationPreferenceChange
from deltacrown.timeutil import utcnow

EVENTS_TOKEN = "events-token-for-tests"


@pytest.fixture
def app_config(smtp_server, discord_server):
    return {**smtp_server.config(), **discord_server.config(), "DELIVERY_RETRY_INTERVALS": [0, 0],
            "DISCORD_TIMEOUT_SECONDS": 1, "MAIL_TIMEOUT_SECONDS": 2,
            "MAIL_BOUNCE_ADDRESS": "bounces@mail.deltacrown.test", "EMAIL_EVENTS_TOKEN": EVENTS_TOKEN}


def _rows(app, model, *where):
    with app.app_context():
        rows = list(db.session.scalars(select(model).where(*where).order_by(model.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def _email_to(app, make, users, name, type_="match_result", run=None):
    uid = users.ids.get(name) or users.create(name)
    return make.delivery("email", f"{name}@example.com", notification_id=make.notification(uid, type=type_),
                         user_id=uid)


def _send(app, enqueue, run_jobs, *delivery_ids):
    enqueue(*delivery_ids)
    run_jobs()


# --- reports, as servers and providers write them ------------------------------------

def dsn(to: str, recipient: str, status: str = "5.1.1", action: str = "failed", original: bytes | None = None,
        message_id: str = "<dsn-1@mx.example.net>") -> bytes:
    """An RFC 3464 delivery status notification, sent to `to` (our VERP return path)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = message_id
    report.attach(MIMEText("I'm sorry to have to inform you that your message could not be delivered.\n"))
    status_part = MIMEBase("message", "delivery-status")
    per_message = Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; {'550' if status.startswith('5') else '452'} {status} mailbox problem"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    if original is not None:
        headers_only = original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        part = MIMEBase("text", "rfc822-headers")
        part.set_payload(headers_only.decode())
        report.attach(part)
    return report.as_bytes()


def arf(recipient: str, original: bytes, message_id: str = "<arf-1@fbl.example.net>") -> bytes:
    """An RFC 5965 complaint: the recipient pressed "this is spam"; the original is quoted whole."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "feedback@fbl.example.net"
    report["To"] = "abuse@deltacrown.test"
    report["Subject"] = "Complaint about message"
    report["Message-ID"] = message_id
    report.attach(MIMEText("This is an email abuse report.\n"))
    feedback = MIMEBase("message", "feedback-report")
    fields = Message()
    fields["Feedback-Type"] = "abuse"
    fields["User-Agent"] = "ExampleFBL/1.0"
    fields["Version"] = "1"
    fields["Original-Rcpt-To"] = recipient
    feedback.set_payload([fields])
    report.attach(feedback)
    report.attach(MIMEMessage(email.message_from_bytes(original, policy=email.policy.compat32)))
    return report.as_bytes()


def _events_post(client, **kwargs):
    return client.post("/api/v1/email-events", headers={"Authorization": f"Bearer {EVENTS_TOKEN}"}, **kwargs)


# --- synchronous refusals ---------------------------------------------------------------

def test_a_550_bounces_after_one_attempt_suppresses_and_the_address_is_never_mailed_again(
        app, users, make, enqueue, run_jobs, smtp_server, client):
    users.create("root", admin=True)
    first = _email_to(app, make, users, "hana")
    smtp_server.refuse("hana@example.com")
    _send(app, enqueue, run_jobs, first)
    d = make.get(first)
    assert (d.status, d.attempts) == ("bounced", 1) and "550" in d.last_error
    [row] = _rows(app, EmailSuppression)
    assert (row.email, row.reason, row.code, row.source) == ("hana@example.com", "bounce", "550", "smtp")
    assert "5.1.1" in row.detail and row.lifted_at is None

    # The server would take it now: still nothing goes out, the delivery is recorded suppressed.
    smtp_server.refused.clear()
    again = _email_to(app, make, users, "hana")
    _send(app, enqueue, run_jobs, again)
    d = make.get(again)
    assert (d.status, d.attempts) == ("suppressed", 1) and "suppression list" in d.last_error
    assert smtp_server.messages == []
    [event] = _rows(app, EmailEvent)
    assert (event.kind, event.permanent, event.delivery_id) == ("bounce", True, first)

    # An admin lifts it (the API): mail flows again; the row stays as history.
    listed = client.get("/api/v1/suppressions?email=HANA@", headers=users.headers("root"))
    assert listed.status_code == 200 and [s["email"] for s in listed.json["items"]] == ["hana@example.com"]
    assert set(listed.json["items"][0]) == {"id", "email", "reason", "code", "created_at", "until"}
    assert listed.json["next_cursor"] is None
    assert client.delete(f"/api/v1/suppressions/{row.id}", headers=users.headers("hana")).status_code == 403
    assert client.delete(f"/api/v1/suppressions/{row.id}", headers=users.headers("root")).status_code == 204
    assert client.delete(f"/api/v1/suppressions/{row.id}", headers=users.headers("root")).status_code == 204
    assert client.delete("/api/v1/suppressions/999999", headers=users.headers("root")).status_code == 404
    assert client.get("/api/v1/suppressions", headers=users.headers("root")).json == {"items": [], "next_cursor": None}
    third = _email_to(app, make, users, "hana")
    _send(app, enqueue, run_jobs, third)
    assert make.get(third).status == "sent" and len(smtp_server.wait_for(1)) == 1
    assert _rows(app, EmailSuppression)[0].lifted_by.startswith("admin:")


def test_a_450_is_retried_and_delivered_not_suppressed(app, users, make, enqueue, run_jobs, smtp_server):
    did = _email_to(app, make, users, "ivan")
    smtp_server.defer("ivan@example.com", 1)
    _send(app, enqueue, run_jobs, did)
    d = make.get(did)
    assert (d.status, d.attempts) == ("sent", 2)
    assert _rows(app, EmailSuppression) == [] and _rows(app, EmailEvent) == []
    [mail] = smtp_server.wait_for(1)
    # The retry reused the delivery's Message-ID and its VERP return path.
    with app.app_context():
        assert mail["Message-ID"] == mail_headers.message_id("d", did)
        assert mail.mail_from == f"bounces+{mail_headers.token('d', did)}@mail.deltacrown.test"
    assert mail["Auto-Submitted"] == "auto-generated" and mail["Precedence"] is None
    assert mail["List-Id"] == "DeltaCrown notifications <notifications.mail.deltacrown.test>"
    assert mail["Feedback-ID"].startswith("match_result:notifications:deltacrown:")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_refused_recipient_inside_a_batch_does_not_fail_the_rest(app, users, make, run_jobs, smtp_server):
    ids = [_email_to(app, make, users, name) for name in ("amy", "bob", "cat")]
    smtp_server.refuse("bob@example.com")
    with app.app_context():
        send_deliveries.enqueue(ids)
    run_jobs()
    assert [make.get(i).status for i in ids] == ["sent", "bounced", "sent"]
    assert sorted(m["To"] for m in smtp_server.wait_for(2)) == ["amy@example.com", "cat@example.com"]
    assert [r.email for r in _rows(app, EmailSuppression)] == ["bob@example.com"]
    # Running the batch again sends nothing twice.
    with app.app_context():
        send_deliveries.enqueue(ids)
    run_jobs()
    assert len(smtp_server.messages) == 2


def test_the_digest_skips_a_suppressed_address_and_carries_its_own_headers(app, users, make, smtp_server):
    from datetime import datetime

    from deltacrown.models import Notification
    from deltacrown.notifications.digests import send_daily_digest
    from deltacrown.notifications.suppression import suppress

    ids = {name: users.create(name) for name in ("dora", "eli")}
    with app.app_context():
        for uid in ids.values():
            db.session.add(Notification(user_id=uid, type="match_result", title="t", body="b", is_read=False,
                                        created_at=datetime(2026, 3, 4, 12, 0, tzinfo=utcnow().tzinfo),
                                        dedup_key=f"digest-test:{uid}"))
        suppress("eli@example.com", "complaint", "api")
        db.session.commit()
        result = send_daily_digest(now=datetime(2026, 3, 5, 8, 0, tzinfo=utcnow().tzinfo))
    assert (result["sent"], result["suppressed"]) == (1, 1)
    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "dora@example.com" and mail["Precedence"] == "bulk"
    assert mail["List-Id"] == "DeltaCrown digest <digest.mail.deltacrown.test>"
    with app.app_context():
        assert mail_headers.read_token(mail["Message-ID"])[0] == "g"
        assert mail.mail_from.startswith("bounces+g")
        # A later run does not retry the closed claim.
        again = send_daily_digest(now=datetime(2026, 3, 5, 10, 0, tzinfo=utcnow().tzinfo))
    assert again["sent"] == again["suppressed"] == 0 and len(smtp_server.messages) == 1


# --- asynchronous bounces: a Maildir, an mbox, .eml files ----------------------------------

def test_a_dsn_in_a_maildir_bounces_the_delivery_once_and_stops_mail_to_the_address(
        app, users, make, enqueue, run_jobs, smtp_server, runner, tmp_path):
    did = _email_to(app, make, users, "finn")
    _send(app, enqueue, run_jobs, did)
    [mail] = smtp_server.wait_for(1)
    assert make.get(did).status == "sent"
    # The remote server accepted it, then bounced it to our VERP address.
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(dsn(to=mail.mail_from, recipient="finn@example.com", original=mail.raw))
    box.add(b"From: someone@example.net\r\nSubject: hello\r\n\r\nnot a report\r\n")
    result = runner.invoke(args=["process-bounces", str(tmp_path / "Maildir")])
    assert result.exit_code == 0, result.output
    assert "1 bounce(s)/complaint(s) recorded" in result.output and "1 not a bounce" in result.output
    d = make.get(did)
    assert d.status == "bounced" and "5.1.1" in d.last_error
    [row] = _rows(app, EmailSuppression)
    assert (row.email, row.reason, row.code, row.source) == ("finn@example.com", "bounce", "5.1.1", "dsn")

    again = runner.invoke(args=["process-bounces", str(tmp_path / "Maildir")])  # cron runs it again
    assert "0 bounce(s)/complaint(s) recorded, 1 already recorded" in again.output
    assert len(_rows(app, EmailEvent)) == 1 and len(_rows(app, EmailSuppression)) == 1

    later = _email_to(app, make, users, "finn")
    _send(app, enqueue, run_jobs, later)
    assert make.get(later).status == "suppressed" and len(smtp_server.messages) == 1

    runner.invoke(args=["process-bounces", "--remove", str(tmp_path / "Maildir")])
    assert len(mailbox.Maildir(str(tmp_path / "Maildir"), create=False)) == 0


def test_a_dsn_matched_by_the_original_message_id_alone_in_an_mbox(app, users, make, enqueue, run_jobs,
                                                                     smtp_server, runner, tmp_path):
    app.config["MAIL_BOUNCE_ADDRESS"] = None  # no VERP: the report is sent to the plain sender
    did = _email_to(app, make, users, "gus")
    _send(app, enqueue, run_jobs, did)
    [mail] = smtp_server.wait_for(1)
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"), create=True)
    box.add(mailbox.mboxMessage(dsn(to="noreply@deltacrown.local", recipient="gus@example.com",
                                    original=mail.raw)))
    box.flush()
    box.close()
    result = runner.invoke(args=["process-bounces", str(tmp_path / "bounces.mbox")])
    assert "1 bounce(s)/complaint(s) recorded" in result.output, result.output
    assert make.get(did).status == "bounced"
    assert [r.email for r in _rows(app, EmailSuppression)] == ["gus@example.com"]


def test_soft_bounces_count_three_within_a_week_suppress_for_a_week(app, users, make, enqueue, run_jobs,
                                                                     smtp_server, runner, tmp_path):
    sent = []
    for _ in range(3):
        did = _email_to(app, make, users, "hal")
        _send(app, enqueue, run_jobs, did)
        sent.append(did)
    mails = smtp_server.wait_for(3)
    for n, (did, mail) in enumerate(zip(sent, mails)):
        (tmp_path / f"{n}.eml").write_bytes(dsn(to=mail.mail_from, recipient="hal@example.com", status="4.2.2",
                                                message_id=f"<soft-{n}@mx.example.net>"))
        if n < 2:
            runner.invoke(args=["process-bounces", str(tmp_path / f"{n}.eml")])
            runner.invoke(args=["process-bounces", str(tmp_path / f"{n}.eml")])  # twice: counted once
            assert _rows(app, EmailSuppression) == []
    runner.invoke(args=["process-bounces", str(tmp_path)])  # the directory of .eml files
    [row] = _rows(app, EmailSuppression)
    assert row.reason == "soft_bounce" and row.until is not None
    assert timedelta(days=6, hours=23) < row.until - row.created_at <= timedelta(days=7)
    assert len(_rows(app, EmailEvent)) == 3
    assert [make.get(d).status for d in sent] == ["sent"] * 3  # soft bounces were delivered late, or not: no change


# --- the events endpoint ------------------------------------------------------------------

def test_an_arf_complaint_posted_raw_suppresses_and_opts_out_of_that_type_once(
        app, users, make, enqueue, run_jobs, smtp_server, client):
    did = _email_to(app, make, users, "ida", type_="match_result")
    _send(app, enqueue, run_jobs, did)
    [mail] = smtp_server.wait_for(1)
    report = arf("ida@example.com", mail.raw)
    for _ in range(2):
        response = _events_post(client, data=report, content_type="message/rfc822")
        assert response.status_code == 202 and response.json == {"matched": True}
    [row] = _rows(app, EmailSuppression)
    assert (row.reason, row.source) == ("complaint", "arf")
    [change] = _rows(app, NotificationPreferenceChange, NotificationPreferenceChange.source == "complaint")
    assert change.changes == {"channels.match_result": [["in_app", "email"], ["in_app"]]}
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == users.ids["ida"]))
        assert "email" not in pref.chosen_channels("match_result")
        assert db.session.scalar(select(func.count(EmailEvent.id)).where(EmailEvent.kind == "complaint")) == 1
    assert make.get(did).status == "sent"  # a complaint means it was delivered


def test_a_complaint_about_a_critical_type_keeps_it_in_app(app, users, make, enqueue, run_jobs, smtp_server, client):
    """An older choice of email only for a critical type (saved before types could be critical): the
    complaint still suppresses the address and turns the email off, and the type keeps in-app."""
    did = _email_to(app, make, users, "kai", type_="payout_received")
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == users.ids["kai"]))
        pref.channels = {"payout_received": ["email"]}
        db.session.commit()
    _send(app, enqueue, run_jobs, did)
    [mail] = smtp_server.wait_for(1)
    response = _events_post(client, data=arf("kai@example.com", mail.raw), content_type="message/rfc822")
    assert response.status_code == 202 and response.json == {"matched": True}
    [row] = _rows(app, EmailSuppression)
    assert (row.email, row.reason) == ("kai@example.com", "complaint")
    [change] = _rows(app, NotificationPreferenceChange, NotificationPreferenceChange.source == "complaint")
    assert change.changes == {"channels.payout_received": [["in_app", "email"], ["in_app"]]}  # as the editor shows it


def test_json_events_need_the_token_are_validated_and_count_once(app, users, make, client):
    users.create("jan")
    assert client.post("/api/v1/email-events", json={"type": "bounce", "email": "jan@example.com"}).status_code == 401
    wrong = client.post("/api/v1/email-events", json={"type": "bounce", "email": "jan@example.com"},
                        headers={"Authorization": "Bearer " + users.tokens["jan"]})
    assert wrong.status_code == 401
    bad = _events_post(client, json={"type": "bounced", "email": "not an address"})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"type", "email"}
    assert _events_post(client, data="x", content_type="text/plain").status_code == 415
    assert _events_post(client, data=b"", content_type="message/rfc822").status_code == 422
    assert _rows(app, EmailEvent) == []

    for _ in range(2):
        soft = _events_post(client, json={"type": "bounce", "email": "JAN@example.com", "permanent": False})
        assert soft.status_code == 202 and soft.json == {"matched": True}
    assert len(_rows(app, EmailEvent)) == 1 and _rows(app, EmailSuppression) == []
    unknown = _events_post(client, json={"type": "bounce", "email": "nobody@example.com", "permanent": True})
    assert unknown.status_code == 202 and unknown.json == {"matched": False}
    hard = _events_post(client, json={"type": "bounce", "email": "jan@example.com", "permanent": True})
    assert hard.json == {"matched": True}
    assert sorted((r.email, r.reason, r.source) for r in _rows(app, EmailSuppression)) == [
        ("jan@example.com", "bounce", "api"), ("nobody@example.com", "bounce", "api")]


def test_a_json_event_naming_a_delivery_bounces_that_delivery(app, users, make, enqueue, run_jobs, smtp_server,
                                                               client):
    did = _email_to(app, make, users, "kim")
    _send(app, enqueue, run_jobs, did)
    response = _events_post(client, json={"type": "bounce", "email": "kim@example.com", "permanent": True,
                                          "delivery_id": did})
    assert response.json == {"matched": True} and make.get(did).status == "bounced"
    [event] = _rows(app, EmailEvent)
    assert event.delivery_id == did


def test_a_forged_token_matches_nothing(app, users, make, enqueue, run_jobs, smtp_server, client):
    did = _email_to(app, make, users, "lea")
    _send(app, enqueue, run_jobs, did)
    forged = dsn(to=f"bounces+d{did}-0000000000000000@mail.deltacrown.test", recipient="stranger@example.org")
    response = _events_post(client, data=forged, content_type="message/rfc822")
    assert response.status_code == 202 and response.json == {"matched": False}
    assert make.get(did).status == "sent" and _rows(app, EmailSuppression) == []


# --- what the player and the admin see ------------------------------------------------------

def test_the_settings_page_says_why_mail_stopped_and_changing_the_address_lifts_it(
        app, users, make, enqueue, run_jobs, smtp_server, client, auth):
    users.create("mia")
    users.create("other")
    assert auth.login("mia").status_code == 302
    page = client.get("/settings/notifications").get_data(as_text=True)
    assert 'id="email-suppressed"' not in page
    smtp_server.refuse("mia@example.com")
    _send(app, enqueue, run_jobs, _email_to(app, make, users, "mia"))
    page = client.get("/settings/notifications").get_data(as_text=True)
    banner = re.search(r'id="email-suppressed">(.*?)</p>', page, re.S).group(1)
    assert banner.startswith("Mail to m…@example.com bounced on ") and "check the address" in banner

    taken = client.post("/settings/notifications/email", data={"email": "other@example.com"})
    assert taken.status_code == 409 and "already registered" in taken.get_data(as_text=True)
    bad = client.post("/settings/notifications/email", data={"email": "not-an-address"})
    assert bad.status_code == 422 and "not a valid email address" in bad.get_data(as_text=True)
    assert _rows(app, EmailSuppression)[0].lifted_at is None

    changed = client.post("/settings/notifications/email", data={"email": "Mia.New@example.com"})
    assert changed.status_code == 303
    [row] = _rows(app, EmailSuppression)
    assert row.lifted_at is not None and row.lifted_by == "address changed"
    assert 'id="email-suppressed"' not in client.get("/settings/notifications").get_data(as_text=True)
    # Mail goes to the new address.
    did = make.delivery("email", "mia.new@example.com", notification_id=make.notification(users.ids["mia"]),
                        user_id=users.ids["mia"])
    _send(app, enqueue, run_jobs, did)
    assert make.get(did).status == "sent" and smtp_server.wait_for(1)[0]["To"] == "mia.new@example.com"


def test_the_admin_email_preview_shows_the_headers(app, users, client, auth):
    users.create("root", admin=True)
    auth.login("root")
    page = client.get("/admin/email-preview").get_data(as_text=True)
    assert "List-Id: DeltaCrown digest &lt;digest.mail.deltacrown.test&gt;" in page
    assert "List-Id: DeltaCrown notifications &lt;notifications.mail.deltacrown.test&gt;" in page
    assert page.count("Precedence: bulk") == 1  # the digest only
    assert "Auto-Submitted: auto-generated" in page and "Feedback-ID: daily_digest:digest:deltacrown:" in page
    assert "Return-Path: &lt;bounces+g0-" in page and "Message-ID: &lt;dc.d0-" in page
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in page


def test_a_raw_body_that_is_no_report_is_refused_and_writes_nothing(app, users, client):
    users.create("nia")
    plain = b"From: nia@example.com\r\nTo: bounces@mail.deltacrown.test\r\nSubject: hi\r\n\r\nhello\r\n"
    response = _events_post(client, data=plain, content_type="message/rfc822")
    assert response.status_code == 422 and response.json["error"]["fields"] == {
        "body": "not an RFC 3464 or RFC 5965 report"}
    # A report whose only news is a delay is read, and is no bounce.
    delayed = dsn(to="bounces@mail.deltacrown.test", recipient="nia@example.com", status="4.4.7", action="delayed")
    assert _events_post(client, data=delayed, content_type="message/rfc822").json == {"matched": False}
    assert _rows(app, EmailEvent) == [] and _rows(app, EmailSuppression) == []


def test_a_complaint_about_the_digest_turns_the_digest_off_once(app, users, smtp_server, runner, tmp_path):
    from datetime import datetime

    from deltacrown.models import Notification
    from deltacrown.notifications.digests import send_daily_digest

    uid = users.create("ola")
    with app.app_context():
        db.session.add(Notification(user_id=uid, type="match_result", title="t", body="b", is_read=False,
                                    created_at=datetime(2026, 3, 4, 12, 0, tzinfo=utcnow().tzinfo),
                                    dedup_key="digest-complaint"))
        db.session.commit()
        send_daily_digest(now=datetime(2026, 3, 5, 8, 0, tzinfo=utcnow().tzinfo))
    [mail] = smtp_server.wait_for(1)
    (tmp_path / "complaint.eml").write_bytes(arf("ola@example.com", mail.raw))
    for _ in range(2):
        runner.invoke(args=["process-bounces", str(tmp_path / "complaint.eml")])
    changes = _rows(app, NotificationPreferenceChange, NotificationPreferenceChange.source == "complaint")
    assert [c.changes for c in changes] == [{"enable_daily_digest": [True, False]}]
    [row] = _rows(app, EmailSuppression)
    assert (row.email, row.reason) == ("ola@example.com", "complaint")
    [event] = _rows(app, EmailEvent)
    assert event.digest_id is not None and event.user_id == uid


@pytest.mark.postgres
def test_the_same_report_processed_by_two_processes_at_once_is_recorded_once(app, users, make, enqueue, run_jobs,
                                                                              smtp_server, tmp_path):
    import threading

    from deltacrown.notifications.bounces import process_message

    if "postgresql" not in app.config["SQLALCHEMY_DATABASE_URI"]:
        pytest.skip("threads racing need a server database")
    did = _email_to(app, make, users, "pia")
    _send(app, enqueue, run_jobs, did)
    [mail] = smtp_server.wait_for(1)
    report = dsn(to=mail.mail_from, recipient="pia@example.com")
    barrier, outcomes = threading.Barrier(4), []

    def run():
        with app.app_context():
            barrier.wait()
            outcomes.append(process_message(report))
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o["recorded"] for o in outcomes) == [0, 0, 0, 1]
    assert len(_rows(app, EmailEvent)) == 1 and len(_rows(app, EmailSuppression)) == 1
    assert make.get(did).status == "bounced"


def test_retention_keeps_the_bounce_ledger_at_least_a_week(app, users):
    from sqlalchemy import insert

    from deltacrown.notifications.retention import prune_records

    now = utcnow()
    with app.app_context():
        db.session.execute(insert(EmailEvent), [
            {"dedup_key": f"old:{age}", "kind": "bounce", "permanent": True, "email": "x@example.com",
             "source": "api", "created_at": now - timedelta(days=age)} for age in (30, 10, 3, 1)])
        db.session.commit()
        result = prune_records(days=2)
        left = sorted(round((now - e.created_at).total_seconds() / 86400) for e in db.session.scalars(select(EmailEvent)))
    assert result["email_events"] == 2 and left == [1, 3]


def test_a_5xx_at_data_bounces_and_a_4xx_at_data_or_a_dead_server_is_retried(app, users, make, enqueue, run_jobs,
                                                                             smtp_server):
    app.config["DELIVERY_RETRY_INTERVALS"] = []  # one try: what it ends as is what the classification said
    smtp_server.refuse_data_with = "554 5.7.1 Message rejected as spam"
    refused = _email_to(app, make, users, "quin")
    _send(app, enqueue, run_jobs, refused)
    assert make.get(refused).status == "bounced"
    assert [(r.email, r.code) for r in _rows(app, EmailSuppression)] == [("quin@example.com", "554")]

    smtp_server.refuse_data_with = "451 4.3.0 try again later"
    later = _email_to(app, make, users, "rex")
    _send(app, enqueue, run_jobs, later)
    smtp_server.refuse_data_with = None
    smtp_server.stop()
    down = _email_to(app, make, users, "sam")
    _send(app, enqueue, run_jobs, down)
    assert [make.get(d).status for d in (later, down)] == ["failed", "failed"]  # temporary, out of tries
    assert [r.email for r in _rows(app, EmailSuppression)] == ["quin@example.com"]  # no suppression for those
