"""The dashboard in a real browser (Chromium via Playwright), as an admin.

With static/htmx.min.js present the panels refresh themselves and actions swap
the panel in place; without it the same page works by plain form posts. The test
checks whichever applies (and both, once htmx is vendored)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from deltacrown.extensions import db
from deltacrown.notifications.models import Delivery

from tests.support.browser import screenshot

from . import jobs

pytestmark = pytest.mark.browser

HTMX = Path(__file__).resolve().parents[2] / "static" / "htmx.min.js"


@pytest.fixture
def database_url(tmp_path):
    # One backend is enough for the browser (the page logic is covered on both).
    return f"sqlite:///{tmp_path / 'browser.sqlite'}"


@pytest.fixture
def app_config():
    return {"OPS_LIVE_REFRESH_SECONDS": 1}


@pytest.fixture
def browser_context_options():
    return {"viewport": {"width": 1280, "height": 900}}


def _default_failed_count(page) -> str:
    return page.locator("#queues tr", has_text="default").locator("td.num").nth(2).inner_text()


def test_admin_sees_the_dashboard_and_requeues_a_job(app, users, run_jobs, live_server, page):
    users.create("root", admin=True, timezone="Asia/Tokyo")
    with app.app_context():
        failed = jobs.fail.enqueue("shown in the browser")
        jobs.succeed.enqueue(1)
        run_jobs()
        db.session.add_all([
            Delivery(dedup_key="b1", channel="email", target="a@example.com", status="sent", attempts=1),
            Delivery(dedup_key="b2", channel="discord", target="team:1", status="failed", attempts=3),
        ])
        db.session.commit()
    page.goto(f"{live_server.url}/ops")
    assert "/login" in page.url  # logged out: the login page, then back
    page.fill("#username", "root")
    page.fill("#password", users.passwords["root"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/ops")
    assert page.locator("h1").inner_text() == "Operations"
    assert "Asia/Tokyo" in page.locator(".ops-dashboard > p.muted").first.inner_text()
    assert page.locator("#health table").count() == 1
    assert page.locator("#health svg.chart").count() == 1
    assert page.locator(f"#failed-{failed.id}").is_visible()
    assert _default_failed_count(page) == "1"
    screenshot(page, "ops-dashboard")

    if HTMX.exists():
        # The live panel refreshes itself: a job failing now shows up without a reload.
        with app.app_context():
            jobs.fail.enqueue("while the page is open")
            run_jobs()
        page.wait_for_function(
            "() => /\\b2\\b/.test([...document.querySelectorAll('#queues tbody tr')]"
            ".find(row => row.textContent.includes('default')).querySelector('td:nth-of-type(4)').textContent)",
            timeout=15000)
        assert _default_failed_count(page) == "2"

    page.click(f"button[aria-label='Requeue job {failed.id}']")
    # With htmx the panel is swapped in place; without it the form posts and the page
    # comes back with the message flashed. Either way the outcome is announced.
    page.get_by_role("status").filter(has_text=f"Job {failed.id}").wait_for()
    assert page.locator(f"#failed-{failed.id}").count() == 0
    if HTMX.exists():
        assert page.url == f"{live_server.url}/ops"  # no navigation: swapped in place
    else:
        assert re.search(r"/ops#ops-failed$", page.url)
    assert page.console_problems == []
