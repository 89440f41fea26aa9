"""Unsubscribing through the link in a real email stops every email to that player: the daily
digest, new notifications, and deliveries created before the opt-out that are sent or retried
after it (those end `skipped`, with the reason, and never reach the SMTP server).

Real parts: the loopback SMTP server receives the emails the link is taken from, the
unsubscribe page is followed as a mail reader's browser would (GET the page, submit its form),
and sends run in a real RQ worker against Redis.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Delivery, NotificationPreference
from deltacrown.notifications.digests import send_daily_digest
from deltacrown.notifications.service import NotificationService, enqueue_sends
from tests.support.processes import wait_for

UTC = timezone.utc
DAY = datetime(2026, 3, 5, tzinfo=UTC)  # digests go out at 08:00 UTC (the defaults)


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True  # the page's own form must work without a session
    return app


class _FormAction(HTMLParser):
    def __init__(self):
        super().__init__()
        self.actions = []

    def handle_starttag(self, tag, attrs):
        if tag == "form" and dict(attrs).get("method", "").lower() == "post":
            self.actions.append(dict(attrs)["action"])


def unsubscribe_via_link(app, mail, label: str) -> None:
    """Follow the unsubscribe link of a received email: open the page, press its button."""
    [url] = re.findall(rf"^{re.escape(label)}: (\S+)\r?$", mail.text, re.M)
    assert url.startswith("http://localhost:5000/unsubscribe/")
    browser = app.test_client()  # no session: the link is opened from a mail reader
    page = browser.get(urlsplit(url).path)
    assert page.status_code == 200
    parser = _FormAction()
    parser.feed(page.get_data(as_text=True))
    [action] = parser.actions
    done = browser.post(action)
    assert done.status_code == 200 and "is now off" in done.get_data(as_text=True)


def notify(app, user_ids, type_, title, at, enqueue=True) -> dict[int, int]:
    """A notification through the real fan-out at time `at`; returns {user id: email delivery id}."""
    with time_machine.travel(at, tick=False), app.app_context():
        result = NotificationService().notify(user_ids, type_, title, "body", "/notifications",
                                              f"test:{type_}:{at.isoformat()}", enqueue=enqueue)
        rows = db.session.execute(select(Delivery.user_id, Delivery.id).where(
            Delivery.id.in_(result.delivery_ids), Delivery.channel == "email")).all()
    return dict(rows)


def digest_run(app, now):
    with app.app_context():
        return send_daily_digest(now=now)


def mails_to(smtp_server, address):
    return [m for m in smtp_server.messages if m.rcpt_tos == [address]]


def delivery(app, delivery_id) -> Delivery:
    with app.app_context():
        d = db.session.get(Delivery, delivery_id)
        db.session.expunge(d)
        return d


def unsubscribe_from_all_via_digest(app, smtp_server, ada, bob):
    """Both get yesterday's digest; Ada follows its "Unsubscribe from all email" link."""
    notify(app, [ada, bob], "announcement", "Season two starts", DAY - timedelta(hours=12), enqueue=False)
    assert digest_run(app, DAY + timedelta(hours=8))["sent"] == 2
    [digest] = [m for m in mails_to(smtp_server, "ada@example.com") if "digest" in m.subject]
    unsubscribe_via_link(app, digest, "Unsubscribe from all email")
    with app.app_context():
        assert db.session.scalar(select(NotificationPreference.opt_out_email)
                                 .where(NotificationPreference.user_id == ada)) is True
    return len(smtp_server.messages)


def test_after_unsubscribing_from_all_email_the_next_digest_sends_her_nothing(app, csrf_on, users, smtp_server):
    ada, bob = users.create("ada"), users.create("bob")
    before = unsubscribe_from_all_via_digest(app, smtp_server, ada, bob)
    # Unread news on the next day for both; the next run is due for both.
    notify(app, [ada, bob], "announcement", "Finals this weekend", DAY + timedelta(hours=12), enqueue=False)
    result = digest_run(app, DAY + timedelta(days=1, hours=8))
    new = smtp_server.messages[before:]
    assert [m.rcpt_tos for m in new] == [["bob@example.com"]] and "digest" in new[0].subject
    assert result["sent"] == 1 and result["failed"] == 0


def test_after_unsubscribing_from_all_email_a_new_notification_sends_no_email(
        app, csrf_on, users, smtp_server, run_jobs):
    ada, bob = users.create("ada"), users.create("bob")
    before = unsubscribe_from_all_via_digest(app, smtp_server, ada, bob)
    deliveries = notify(app, [ada, bob], "match_result", "Nova 2 - 1 Eclipse", DAY + timedelta(hours=9))
    run_jobs()
    new = smtp_server.wait_for(before + 1)[before:]
    assert [m.rcpt_tos for m in new] == [["bob@example.com"]]
    assert ada not in deliveries  # no email delivery is even created for her


def test_a_delivery_created_before_unsubscribing_from_all_is_skipped_when_sent_or_retried_later(
        app, csrf_on, users, smtp_server, run_jobs):
    app.config["DELIVERY_RETRY_INTERVALS"] = [1, 1]
    ada, bob = users.create("ada"), users.create("bob")
    # Before the opt-out: one delivery whose first try fails temporarily (its retry is scheduled),
    # and a second pair not sent yet at all (its batch job runs later).
    smtp_server.defer("ada@example.com", times=1)
    retried = notify(app, [ada, bob], "match_result", "Nova 2 - 1 Eclipse", DAY - timedelta(hours=11))
    run_jobs()
    assert delivery(app, retried[ada]).status == "pending" and delivery(app, retried[bob]).status == "sent"
    waiting = notify(app, [ada, bob], "bracket_ready", "Spring Cup bracket", DAY - timedelta(hours=10),
                     enqueue=False)

    before = unsubscribe_from_all_via_digest(app, smtp_server, ada, bob)

    with app.app_context():
        enqueue_sends(sorted(waiting.values()))  # the batch path

    def retry_done():  # the single-send retry path: its job is scheduled 1 s after the first try
        run_jobs(with_scheduler=True)
        return delivery(app, retried[ada]).status != "pending"

    wait_for(retry_done, timeout=20, message="the scheduled retry ran")
    for delivery_id in (retried[ada], waiting[ada]):
        d = delivery(app, delivery_id)
        assert d.status == "skipped", (d.status, d.last_error)
        assert "unsubscribed from all email" in d.last_error and d.sent_at is None
    assert delivery(app, waiting[bob]).status == "sent"
    new = smtp_server.wait_for(before + 1)[before:]
    assert [m.rcpt_tos for m in new] == [["bob@example.com"]]
    assert mails_to(smtp_server, "ada@example.com")[-1].subject.startswith("Your DeltaCrown digest")


def test_a_delivery_created_before_unsubscribing_from_its_type_is_skipped(app, csrf_on, users, smtp_server,
                                                                         run_jobs, make):
    cleo = users.create("cleo")
    first = notify(app, [cleo], "match_result", "Nova 2 - 1 Eclipse", DAY)
    run_jobs()
    [mail] = smtp_server.wait_for(1)
    later = notify(app, [cleo], "match_result", "Nova 0 - 2 Eclipse", DAY + timedelta(hours=1), enqueue=False)
    other_type = notify(app, [cleo], "bracket_ready", "Spring Cup bracket", DAY + timedelta(hours=1),
                        enqueue=False)
    unsubscribe_via_link(app, mail, "Unsubscribe from “Match result” email")

    with app.app_context():
        enqueue_sends([later[cleo], other_type[cleo]])
    run_jobs()
    skipped, sent = delivery(app, later[cleo]), delivery(app, other_type[cleo])
    assert skipped.status == "skipped" and "Match result" in skipped.last_error
    assert sent.status == "sent" and delivery(app, first[cleo]).status == "sent"
    assert [m.subject for m in smtp_server.wait_for(2)][1].endswith("Spring Cup bracket")


def test_a_batch_reads_the_consent_of_all_its_recipients_in_one_query(app, users, make, smtp_server, count_queries):
    from deltacrown.notifications.deliveries import send_batch
    from deltacrown.models import User
    from deltacrown.notifications.preferences import update_preferences

    ids = {}
    for name in ("eve", "fay", "gus", "hal", "ivy"):
        uid = users.create(name)
        ids[name] = make.delivery("email", f"{name}@example.com", notification_id=make.notification(uid),
                                  user_id=uid)
    with app.app_context():
        update_preferences(db.session.get(User, users.ids["gus"]), {"opt_out_email": True}, "api")
    with app.app_context(), count_queries() as q:
        counts = send_batch(list(ids.values()))
    assert counts == {"sent": 4, "skipped": 1}
    assert len([s for s in q.statements if "notification_preferences" in s]) == 1
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(4)) == [
        "eve@example.com", "fay@example.com", "hal@example.com", "ivy@example.com"]
    assert delivery(app, ids["gus"]).status == "skipped"


def test_a_send_reads_its_delivery_once_in_the_claim(app, users, make, smtp_server, count_queries):
    # The claim's UPDATE .. RETURNING is the send's read of its row, and its commit keeps it
    # loaded: no read of the row before the claim nor after it, then the one mark.
    from deltacrown.notifications.deliveries import send_delivery

    uid = users.create("eve")
    delivery_id = make.delivery("email", "eve@example.com", notification_id=make.notification(uid), user_id=uid)
    with app.app_context(), count_queries() as q:
        assert send_delivery(delivery_id)["status"] == "sent"
    # (The consent query, which reads the recipient's choices through the row, is not counted.)
    on_row = [s.split()[0] for s in q.statements
              if re.match(r"UPDATE deliveries|SELECT deliveries\.(status|id, deliveries\.)", s)]
    assert on_row == ["UPDATE", "UPDATE"]
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]
    assert (delivery(app, delivery_id).status, delivery(app, delivery_id).attempts) == ("sent", 1)


def test_a_notifications_email_reads_the_notification_its_recipient_and_the_suppression_list_at_once(
        app, users, make, smtp_server, count_queries):
    # What the email says, who it is to and whether the address is suppressed: one read at send
    # time (three reads were a quarter of a send under load).
    from deltacrown.notifications.deliveries import send_delivery

    uid = users.create("eve")
    delivery_id = make.delivery("email", "eve@example.com", notification_id=make.notification(uid), user_id=uid)
    with app.app_context(), count_queries() as q:
        assert send_delivery(delivery_id)["status"] == "sent"
    reads = [s for s in q.statements if re.match(r"SELECT (notifications|users|email_suppressions)\.", s)]
    assert len(reads) == 1, reads
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["eve@example.com"]]
