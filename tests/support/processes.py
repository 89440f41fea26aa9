"""Shared test fixtures: real OS processes (gunicorn, `python worker.py`, the `flask` CLI).

Tests that prove something about a process boundary (the web process enqueues,
a worker subprocess runs it; a config error ends a process with one line) start
real subprocesses. These helpers keep that safe and bounded:

- `process_env(**overrides)`: the current environment with the app's variables
  (DATABASE_URL, REDIS_URL, ...) blanked, then `overrides` applied; an override
  of None blanks one. Blank, not removed: an empty value counts as unset for the
  app, and a developer's `.env` cannot fill it in (python-dotenv never overrides
  a variable that exists). PORT and WEB_CONCURRENCY are removed (gunicorn reads
  them and refuses empty ones). Subprocesses never inherit a stray REDIS_URL.
- `run_process(args, env=..., timeout=...)`: run a command to completion (the
  `flask` CLI, `python worker.py` expected to fail) → CompletedProcess (text).
- `spawn` fixture → `spawn(args, env=..., name=...)` starts a long-running
  process (own session, output to a log file, not a pipe, so it never blocks
  on a full pipe) and returns a `ManagedProcess`; every process still running
  at the end of the test is stopped (SIGTERM, then SIGKILL of its process group).
- `wait_for(condition, timeout=..., message=...)`: poll until `condition()`
  returns something truthy, with a deadline; raises `WaitTimeout` naming what
  was awaited (an AssertionError inside `condition` fails at once). Never sleep
  "to let it finish": wait on a condition.
- `wait_for_http(url, ...)`: wait until an HTTP URL answers with a status.
- `free_port()`: a free TCP port on 127.0.0.1.

Python subprocesses use `sys.executable` (the interpreter running pytest), so
they see the same installed packages: e.g. `[PYTHON, "worker.py"]`,
`[PYTHON, "-m", "flask", "seed-demo"]`, `[PYTHON, "-m", "gunicorn", "app:app", ...]`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deltacrown.config import PROJECT_ROOT
from deltacrown.devredis import free_port  # noqa: F401  (re-exported for tests)

PYTHON = sys.executable

# Variables the app reads; a subprocess gets only those a test passes explicitly.
APP_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL", "SCHEDULER_TIMEZONE", "LOG_LEVEL",
    "DISCORD_API_BASE", "DISCORD_WEBHOOK_URL", "FLASK_DEBUG", "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
    "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER", "MAIL_SUPPRESS_SEND",
    "RQ_JOB_TIMEOUT", "RQ_RESULT_TTL", "RQ_FAILURE_TTL",
    "DEV_HOST", "MAX_CONTENT_LENGTH", "METRICS_TOKEN", "METRICS_CACHE_SECONDS",
    "PAYOUT_APPROVAL_THRESHOLD", "PAYOUT_APPROVAL_ALLOW_SELF",
)
# Read by gunicorn itself, where an empty value is an error: removed instead.
SERVER_VARIABLES = ("PORT", "WEB_CONCURRENCY")


class WaitTimeout(AssertionError):
    """A condition did not become true within its deadline."""


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """Poll `condition()` until it returns a truthy value (returned) or `timeout` passes.

    Exceptions raised by `condition` count as "not yet" (e.g. connection refused);
    the last one is named in the timeout message. An AssertionError fails at once:
    assert in the condition what must hold meanwhile (e.g. the process is running).
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # the condition decides what "not yet" looks like
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def process_env(**overrides) -> dict:
    """os.environ with the app's variables blanked, plus `overrides` (None blanks one)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.update({name: "" for name in APP_VARIABLES})
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        env[key] = "" if value is None else str(value)
    return env


def run_process(args, env: dict | None = None, timeout: float = 60.0, cwd=None) -> subprocess.CompletedProcess:
    """Run a command to completion (text output captured); raises on timeout."""
    return subprocess.run(args, env=process_env() if env is None else env, cwd=cwd or PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


class ManagedProcess:
    """A started subprocess in its own session, its output in `log_path`."""

    def __init__(self, args, env: dict, log_path: Path, cwd=None, name: str | None = None):
        self.name = name or Path(str(args[1] if args[0] == PYTHON and len(args) > 1 else args[0])).name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd or PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self):
        return self.popen.poll()

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        if self.is_running():
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; raises WaitTimeout (with the log tail) if it does not exit in time."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} (pid {self.pid}) still running after {timeout}s; "
                              f"log tail:\n{self.output()[-2000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process, wait; if it will not go, SIGKILL its whole process group."""
        if self.is_running():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self.kill_group()  # leftovers of a process that exited but left children behind
        self._log.close()
        return self.popen.returncode

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # its own session: only what it started
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.returncode is None:
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} rc={self.popen.returncode}>"


def wait_for_http(url: str, timeout: float = 60.0, status: int | None = 200, process: ManagedProcess | None = None):
    """Wait until GET `url` answers (with `status`, if given). Fails at once if `process` died."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.is_running():
            raise WaitTimeout(f"{process.name} exited with {process.poll()} before {url} answered; "
                              f"log tail:\n{process.output()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except OSError:
            code = None
        if code is not None and (status is None or code == status):
            return code
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {url} (last status {code})")
        time.sleep(0.1)


@pytest.fixture
def spawn(tmp_path):
    """`spawn(args, env=None, name=None, cwd=None)` → ManagedProcess, stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(args, env: dict | None = None, name: str | None = None, cwd=None) -> ManagedProcess:
        log_path = tmp_path / f"proc-{len(started)}-{Path(str(name or 'process')).name}.log"
        proc = ManagedProcess(list(args), process_env() if env is None else env, log_path, cwd=cwd, name=name)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
