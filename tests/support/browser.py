"""Shared test fixtures: browser.

- `live_server`: the test app (the `app` fixture: its database and Redis) served by a
  real HTTP server (werkzeug) on a free loopback port, in a thread.
- `browser`: Debian's system Chromium driven by Playwright (never `playwright install`);
  tests using it skip, saying why, when `chromium` is not on PATH.
- `page`: a fresh browser context on the live server (options: `browser_context_options`); the test FAILS on any console
  error or uncaught page error (a CSP violation shows up as one), and a last
  screenshot is saved. `screenshot(page, name)` saves more; `log_in(page, username, password)`
  fills in the login form.
- `worker_process`: a real `python worker.py` subprocess on the test's database and Redis
  (`WorkerProcess` starts more, e.g. several with other queues or environment variables).

Screenshots and worker logs go to TEST_OUTPUT_DIR (default: ./test-output).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.processes import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def output_dir() -> Path:
    path = Path(os.environ.get("TEST_OUTPUT_DIR") or PROJECT_ROOT / "test-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


# --- live server -------------------------------------------------------------------

class LiveServer:
    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def live_server(app):
    server = LiveServer(app).start()
    yield server
    server.stop()


# --- a real worker process ---------------------------------------------------------

class WorkerProcess:
    """A real `python worker.py QUEUE ...` subprocess on the app's database and Redis.

    `env` adds or overrides environment variables (e.g. an SMTP stand-in's `env()`).
    """

    def __init__(self, app, log_path: Path, queues=("notifications", "sends", "default"), env: dict | None = None):
        self.app = app
        self.log_path = log_path
        self.queues = queues
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True):
        """Start the process; with `wait`, return once it has registered with Redis."""
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": self.app.config["REDIS_URL"],
            "SECRET_KEY": self.app.config["SECRET_KEY"],
            "PUBLIC_BASE_URL": self.app.config["PUBLIC_BASE_URL"],
            "DISCORD_API_BASE": self.app.config["DISCORD_API_BASE"],
            "MAIL_SUPPRESS_SEND": "true",
            "LOG_LEVEL": "INFO",
            **{key: str(value) for key, value in self.env.items()},
        })
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "worker.py", *self.queues], cwd=PROJECT_ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            from rq import Worker

            from deltacrown.queue import get_redis

            redis = get_redis(self.app)
            wait_for(lambda: self.proc.poll() is not None
                     or any(w.pid == self.proc.pid for w in Worker.all(connection=redis)),
                     timeout=30, message="the worker process to register with Redis")
            if self.proc.poll() is not None:
                raise AssertionError(f"worker.py exited with {self.proc.returncode}: {self.log()}")
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # HerokuWorker: SIGTERM ends it cleanly

    def stop(self):
        self.terminate()
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def worker_process(app, request):
    worker = WorkerProcess(app, output_dir() / f"worker-{_safe_name(request.node.name)}.log").start()
    yield worker
    worker.stop()


# --- browser -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    executable = shutil.which("chromium")
    if not executable:
        pytest.skip("browser tests need Debian's `chromium` on PATH (apt-get install chromium); not found")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def screenshot(page, name: str) -> Path:
    path = output_dir() / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, username: str, password: str) -> None:
    """Fill in and send the login form the page shows."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def browser_context_options():
    """Override in a test module for other context options, e.g. {"java_script_enabled": False}."""
    return {}


@pytest.fixture
def page(browser, live_server, request, browser_context_options):
    """A page on the live server that fails the test on any console or page error."""
    options = {"base_url": live_server.url, "viewport": {"width": 1100, "height": 900}, **browser_context_options}
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text} ({msg.location})")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.console_problems = problems
    yield page
    try:
        screenshot(page, f"{request.node.name}-last")
    finally:
        context.close()
    if problems:
        pytest.fail("the page logged errors:\n" + "\n".join(problems), pytrace=False)
