"""Ops test fixtures: an admin session, a test app pointed at a closed Redis port,
and a minimal live server + Chromium for the browser test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from deltacrown.accounts.services import create_user
from deltacrown.devredis import free_port
from deltacrown.extensions import db
from deltacrown.ops import schedule
from deltacrown.ops.schedule import JobSpec

from ..conftest import _reset_schema, make_test_app

# A recurring job whose function exists on every branch (the real ones are built
# by other parts), and one whose module does not exist.
TEST_RECURRING = (
    JobSpec("test-tick", "tests.ops.jobs.tick", "Tick (test job)", cron="*/5 * * * *"),
    JobSpec("test-missing", "tests.ops.no_such_module.job", "A job whose code is absent", cron="0 4 * * *"),
)
TEST_ON_DEMAND = JobSpec("test-double", "tests.ops.jobs.succeed", "Double a number", args=("value",))


@pytest.fixture
def test_schedule(monkeypatch):
    """Replace the schedule's tables with TEST_RECURRING for one test."""
    monkeypatch.setattr(schedule, "RUNNABLE_JOBS", (*TEST_RECURRING, TEST_ON_DEMAND))
    monkeypatch.setattr(schedule, "RECURRING_JOBS", TEST_RECURRING)
    monkeypatch.setattr(schedule, "JOBS_BY_NAME", {j.name: j for j in (*TEST_RECURRING, TEST_ON_DEMAND)})
    return TEST_RECURRING


@pytest.fixture
def admin(client, users, auth):
    """The test client, logged in as an admin in Europe/Berlin."""
    users.create("root", admin=True, timezone="Europe/Berlin")
    response = auth.login("root")
    assert response.status_code == 302
    return client


@pytest.fixture
def app_without_redis(database_url):
    """An app whose REDIS_URL points at a loopback port nobody listens on."""
    app = make_test_app(database_url, f"redis://127.0.0.1:{free_port()}/0")
    _reset_schema(app)
    with app.app_context():
        create_user("root", "root@example.com", password="root-password", is_admin=True)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- browser -------------------------------------------------------------------

@pytest.fixture
def live_server(app):
    """The app served over real HTTP on a loopback port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser_page():
    """A Chromium page (Debian's chromium via Playwright); collects console errors."""
    executable = shutil.which("chromium")
    if not executable:
        pytest.skip("browser tests need the chromium binary (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.console_errors = []

        def on_console(msg):
            # The browser asks for /favicon.ico on its own; the site has none (not a page error).
            if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
                page.console_errors.append(f"{msg.text} ({msg.location.get('url')})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def test_output_dir():
    path = Path(os.environ.get("TEST_OUTPUT_DIR") or Path(__file__).resolve().parents[2] / "test-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def worker_process(app):
    """Start a real RQ worker in another process (burst: it exits when the queues are
    empty) on this test's database and Redis. Returns a function that starts one."""
    started = []

    def start():
        script = ("import sys; from tests.conftest import make_test_app; from deltacrown.queue import run_burst; "
                  "run_burst(make_test_app(sys.argv[1], sys.argv[2]))")
        proc = subprocess.Popen([sys.executable, "-c", script, app.config["SQLALCHEMY_DATABASE_URI"],
                                 app.config["REDIS_URL"]], cwd=Path(__file__).resolve().parents[2])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
