"""The shared process helpers (tests/support/processes.py) do what other tests rely on."""
import signal

import pytest

from tests.support.processes import PYTHON, WaitTimeout, process_env, wait_for

STUBBORN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")


def test_wait_for_returns_the_value_or_names_what_it_waited_for():
    calls = iter([None, 0, "done"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.01) == "done"
    with pytest.raises(WaitTimeout, match="waiting for the moon.*ZeroDivisionError"):
        wait_for(lambda: 1 / 0, timeout=0.2, interval=0.01, message="the moon")


def test_wait_for_fails_at_once_on_an_assertion():
    def condition():
        assert False, "the process died"

    with pytest.raises(AssertionError, match="the process died"):
        wait_for(condition, timeout=60)


def test_process_env_blanks_the_app_variables(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://stray:6379/0")
    monkeypatch.setenv("PORT", "1234")
    env = process_env(DATABASE_URL="sqlite:///x.sqlite", SECRET_KEY=None)
    assert env["REDIS_URL"] == "" and env["SECRET_KEY"] == "" and "PORT" not in env
    assert env["DATABASE_URL"] == "sqlite:///x.sqlite"


def test_stop_kills_a_process_that_ignores_sigterm(spawn):
    proc = spawn([PYTHON, "-c", STUBBORN], name="stubborn")
    wait_for(lambda: "ready" in proc.output(), timeout=30, message="the child to start")
    proc.stop(signal.SIGTERM, timeout=0.5)
    assert not proc.is_running() and proc.poll() == -signal.SIGKILL
