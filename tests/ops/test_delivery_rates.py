"""The seed's delivery targets on the dashboard and /metrics: email bounce rate vs 5 %, Discord
webhook success vs 98 %, over 24 hours and 7 days with a trend per day; the suppression list
searched and lifted from the dashboard."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import insert, select

from deltacrown.extensions import db
from deltacrown.notifications.models import Delivery, EmailEvent, EmailSuppression
from deltacrown.notifications.suppression import suppress
from deltacrown.ops.delivery_rates import delivery_rates
from deltacrown.timeutil import utcnow


def _deliveries(app, channel: str, status: str, count: int, age: timedelta = timedelta(hours=1), tag: str = ""):
    now = utcnow()
    with app.app_context():
        db.session.execute(insert(Delivery), [
            {"dedup_key": f"rate:{channel}:{status}:{tag}:{n}", "channel": channel,
             "target": f"p{n}@example.com" if channel == "email" else "platform", "status": status,
             "attempts": 1, "created_at": now - age} for n in range(count)])
        db.session.commit()


def _bounces(app, count: int, age: timedelta = timedelta(hours=1), kind: str = "bounce", tag: str = ""):
    now = utcnow()
    with app.app_context():
        db.session.execute(insert(EmailEvent), [
            {"dedup_key": f"rate:{kind}:{tag}:{n}", "kind": kind, "permanent": True, "email": f"b{n}@example.com",
             "source": "smtp", "created_at": now - age} for n in range(count)])
        db.session.commit()


def test_rates_over_24_hours_and_7_days_against_the_seed_levels(app):
    # Last 24 hours: 94 emails out, 6 bounced (6 %: alert); Discord 99 of 100 (99 %: ok).
    _deliveries(app, "email", "sent", 90)
    _deliveries(app, "email", "bounced", 4)
    _deliveries(app, "email", "suppressed", 3)
    _deliveries(app, "email", "skipped", 5)  # consent withdrawn: neither sent nor a failure
    _bounces(app, 6)
    _bounces(app, 1, kind="complaint")
    _deliveries(app, "discord", "sent", 99)
    _deliveries(app, "discord", "failed", 1)
    # Three days ago: 100 more emails, no bounce; Discord 95 of 100 (alert on that day).
    _deliveries(app, "email", "sent", 100, age=timedelta(days=3), tag="old")
    _deliveries(app, "discord", "sent", 95, age=timedelta(days=3), tag="old")
    _deliveries(app, "discord", "failed", 5, age=timedelta(days=3), tag="old")
    # Older than the week: not counted.
    _deliveries(app, "email", "bounced", 50, age=timedelta(days=9), tag="ancient")
    with app.app_context():
        rates = delivery_rates()
    day, week = rates.windows
    assert (day.email_sent, day.bounced, day.complained, day.suppressed) == (94, 6, 1, 3)
    assert round(day.bounce_rate, 4) == round(6 / 94, 4) and day.bounce_level == "alert"
    assert day.discord_success == 0.99 and day.discord_level == "ok"
    assert (week.email_sent, week.bounced) == (194, 6) and week.bounce_level == "ok"  # 3.1 %
    assert week.discord_success == 194 / 200 and week.discord_level == "alert"  # 97 %
    assert len(rates.days) == 7 and sum(d.email_sent for d in rates.days) == 194


def test_exactly_5_percent_is_an_alert_and_98_percent_discord_is_not_ok(app):
    _deliveries(app, "email", "sent", 100)
    _bounces(app, 5)
    _deliveries(app, "discord", "sent", 98)
    _deliveries(app, "discord", "failed", 2)
    with app.app_context():
        day = delivery_rates().windows[0]
    assert day.bounce_rate == 0.05 and day.bounce_level == "alert"
    assert day.discord_success == 0.98 and day.discord_level == "alert"


def test_dashboard_shows_rates_trend_and_lifts_a_suppression(app, admin):
    _deliveries(app, "email", "sent", 97)
    _bounces(app, 3)
    with app.app_context():
        suppress("alice@example.com", "bounce", "smtp", "550", "5.1.1 No such user")
        suppress("bob@example.com", "complaint", "arf", "abuse")
        db.session.commit()
    html = admin.get("/ops").get_data(as_text=True)
    section = re.search(r'<section id="ops-mail".*?</section>', html, re.S).group(0)
    row = re.search(r'<th scope="row">Last 24 hours</th>(.*?)</tr>', section, re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["97", "3", "0", "0"]
    assert "3.1%" in row and 'level-ok">ok' in row
    assert "Email bounce rate per day:" in section and "Discord webhook success per day:" in section
    assert section.count("<svg") == 2 and "3 bounced of 97 sent" in section
    assert "alice@example.com" in section and "bob@example.com" in section

    found = admin.get("/ops/mail?q=ALI").get_data(as_text=True)
    assert "alice@example.com" in found and "bob@example.com" not in found
    with app.app_context():
        alice = db.session.scalar(select(EmailSuppression.id).where(EmailSuppression.email == "alice@example.com"))
    lifted = admin.post(f"/ops/suppressions/{alice}/lift", data={"q": "ali"}, headers={"HX-Request": "true"})
    assert lifted.status_code == 200 and "alice@example.com gets email again." in lifted.get_data(as_text=True)
    assert "No suppressed address contains “ali”." in lifted.get_data(as_text=True)
    with app.app_context():
        row = db.session.get(EmailSuppression, alice)
        assert row.lifted_at is not None and row.lifted_by.startswith("admin:")


def test_metrics_expose_the_rates_and_healthz_stays_about_liveness(app, client):
    _deliveries(app, "email", "sent", 19)
    _bounces(app, 1)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'deltacrown_email{outcome="bounced",window="24h"} 1.0' in text
    assert 'deltacrown_email{outcome="sent",window="7d"} 19.0' in text
    assert 'deltacrown_delivery_rate{rate="email_bounce",window="24h"} 0.05263' in text
    assert 'deltacrown_delivery_rate_target{rate="email_bounce"} 0.05' in text
    assert 'deltacrown_deliveries{channel="email",status="suppressed"} 0.0' in text
    health = client.get("/healthz")
    assert "bounce" not in health.get_data(as_text=True)
