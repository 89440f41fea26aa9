"""The dashboard's "Payouts awaiting approval": the threshold in force, pending payouts (flagged
after 24 hours), approve / reject (reason required) as a second admin, the four-eyes refusal,
the audit trail, HTMX partials, and CSRF on its forms."""
from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select, update

from deltacrown.economy.models import CoinTransaction, Payout
from deltacrown.economy.payouts import distribute_tournament_payouts
from deltacrown.economy.services import balance
from deltacrown.extensions import db
from deltacrown.models import Tournament
from deltacrown.timeutil import utcnow
from tests.automation.money_factories import add_teams, add_tournament

HX = {"HX-Request": "true"}


@pytest.fixture
def app_config():
    return {"PAYOUT_APPROVAL_THRESHOLD": 600}


@pytest.fixture
def held(app, users):
    """Two held payouts (1000 coins each) of tournaments completed by alice; the first held 25 hours ago."""
    users.create("alice", admin=True)
    users.create("bob", admin=True)
    ids = []
    with app.app_context():
        for name in ("Old Cup", "New Cup"):
            cup = add_tournament(status="completed", placements=add_teams(2), name=name)
            db.session.get(Tournament, cup).completed_by_id = users.ids["alice"]
            db.session.commit()
            ids.append(distribute_tournament_payouts(cup)["payouts"][0]["payout_id"])
        db.session.execute(update(Payout).where(Payout.id == ids[0]).values(created_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
    return ids


def _section(html: str) -> str:
    html = unescape(html)
    start = html.index('<section id="ops-approvals"')
    return html[start:html.index("</section>", start)]


def _article(section: str, payout_id: int) -> str:
    start = section.index(f'id="payout-{payout_id}"')
    return section[start:section.index("</article>", start)]


def _status(app, payout_id):
    with app.app_context():
        return db.session.get(Payout, payout_id).status


def test_pending_payouts_threshold_and_the_overdue_flag(app, client, auth, held):
    auth.login("bob")
    section = _section(client.get("/ops").get_data(as_text=True))
    assert "Payouts awaiting approval (2)" in section
    words = " ".join(re.sub(r"<[^>]+>", "", section).split())
    assert "Threshold in force: payouts of 600 coins or more wait for a second admin." in words
    assert "cannot approve its payouts (four eyes)" in words
    old, new = _article(section, held[0]), _article(section, held[1])
    old_words = " ".join(re.sub(r"<[^>]+>", "", old).split())
    assert "Old Cup" in old and "1000 coins" in old and "tournament completed by alice" in old_words
    assert "Waiting for more than 24 hours" in old and "Waiting for more than 24 hours" not in new
    assert 'name="reason"' in old and "required" in old
    # The partial on its own (HTMX refresh).
    partial = client.get("/ops/approvals", headers=HX).get_data(as_text=True)
    assert '<section id="ops-approvals"' in partial and "<html" not in partial and "Old Cup" in partial


def test_four_eyes_then_a_second_admin_approves_once_and_rejects_with_a_reason(app, client, auth, users, held):
    auth.login("alice")  # she completed both tournaments
    refused = client.post(f"/ops/payouts/{held[0]}/approve", headers=HX).get_data(as_text=True)
    assert "Four-eyes rule" in unescape(refused) and _status(app, held[0]) == "pending_approval"
    auth.logout()

    auth.login("bob")
    response = client.post(f"/ops/payouts/{held[0]}/approve")  # a plain form: flash and back
    assert response.status_code == 302 and response.headers["Location"].endswith("#ops-approvals")
    assert _status(app, held[0]) == "paid"
    again = client.post(f"/ops/payouts/{held[0]}/approve", headers=HX).get_data(as_text=True)
    assert "already approved and paid by bob" in unescape(again)
    with app.app_context():
        payout = db.session.get(Payout, held[0])
        assert balance(payout.user_id) == 1000
        assert db.session.scalar(select(db.func.count()).select_from(CoinTransaction).where(
            CoinTransaction.user_id == payout.user_id)) == 1

    blank = client.post(f"/ops/payouts/{held[1]}/reject", data={"reason": "  "}, headers=HX).get_data(as_text=True)
    assert "reason: say why" in unescape(blank) and _status(app, held[1]) == "pending_approval"
    done = _section(client.post(f"/ops/payouts/{held[1]}/reject", data={"reason": "Duplicate <entry>"},
                                headers=HX).get_data(as_text=True))
    assert f"Payout {held[1]} rejected" in done and _status(app, held[1]) == "rejected"
    assert "Payouts awaiting approval (0)" in done and "No payouts await approval." in done
    # The audit trail: who completed, who decided, when, why (escaped, never markup).
    raw = client.get("/ops").get_data(as_text=True)
    assert "Duplicate &lt;entry&gt;" in raw and "Duplicate <entry>" not in raw
    trail = raw[raw.index('<section id="ops-approvals"'):]
    for payout_id, decision, reason in ((held[0], "approved, paid", "—"), (held[1], "rejected", "Duplicate <entry>")):
        row = re.search(rf'<tr id="payout-trail-{payout_id}">(.*?)</tr>', trail, re.S).group(1)
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[4] == decision and cells[5] == "alice" and cells[6] == "bob" and cells[8] == reason, cells
        assert cells[7] != "—"


def test_unknown_payout_and_non_admins(app, client, auth, users, held):
    users.create("player")
    auth.login("player")
    assert client.post(f"/ops/payouts/{held[0]}/approve").status_code == 403
    assert client.get("/ops/approvals").status_code == 403
    auth.logout()
    auth.login("bob")
    missing = client.post("/ops/payouts/999999/approve", headers=HX).get_data(as_text=True)
    assert "payout 999999 does not exist" in missing
    assert _status(app, held[0]) == "pending_approval"


@pytest.mark.parametrize("app_config", [{}])
def test_threshold_off_is_said(client, auth, users):
    users.create("bob", admin=True)
    auth.login("bob")
    section = _section(client.get("/ops").get_data(as_text=True))
    words = " ".join(re.sub(r"<[^>]+>", "", section).split())
    assert "Threshold in force: off" in words and "No payouts await approval." in words


@pytest.mark.parametrize("app_config", [{"PAYOUT_APPROVAL_THRESHOLD": 600, "WTF_CSRF_ENABLED": True}])
def test_the_approval_forms_need_the_csrf_token(app, client, users, held):
    def token(html):
        return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)

    login_page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "bob", "password": users.passwords["bob"],
                                "csrf_token": token(login_page)})
    form = re.search(rf'action="/ops/payouts/{held[0]}/approve".*?</form>', client.get("/ops").get_data(as_text=True),
                     re.S).group(0)
    assert client.post(f"/ops/payouts/{held[0]}/approve").status_code == 400
    assert client.post(f"/ops/payouts/{held[1]}/reject", data={"reason": "no"}).status_code == 400
    assert _status(app, held[0]) == _status(app, held[1]) == "pending_approval"
    assert client.post(f"/ops/payouts/{held[0]}/approve", data={"csrf_token": token(form)}).status_code == 302
    assert _status(app, held[0]) == "paid"
