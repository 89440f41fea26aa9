"""`make run`'s dev runner, end to end: embedded Redis, migrations, demo seed, web,
worker and scheduler; a demo login reaches a page; Ctrl-C stops everything."""
import os
import re
import signal

import pytest
import requests
from redis import Redis
from rq import Worker

from deltacrown.extensions import db
from deltacrown.ops.demo import DEMO_ACCOUNTS
from deltacrown.ops.jobs import ping
from deltacrown.queue import fetch_job
from tests.conftest import make_test_app
from tests.support.processes import PYTHON, free_port, process_env, wait_for, wait_for_http


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def login(base: str, username: str, password: str) -> requests.Response:
    session = requests.Session()
    form = session.get(f"{base}/login", timeout=10)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text)
    assert token, form.text
    return session.post(f"{base}/login", timeout=10, allow_redirects=True,
                        data={"csrf_token": token.group(1), "username": username, "password": password})


def test_dev_runner_serves_logins_and_stops_every_child_on_ctrl_c(tmp_path, spawn):
    port = free_port()
    env = process_env(DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite'}", PORT=port, WEB_CONCURRENCY=1,
                      REDIS_URL=None)
    runner = spawn([PYTHON, "-m", "deltacrown.devserver"], env=env, name="devserver")
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/login", timeout=90, process=runner)

    username, password, *_ = DEMO_ACCOUNTS[1]
    page = login(base, username, password)
    assert page.status_code == 200 and page.url == f"{base}/"
    assert f"Welcome, {username}" in page.text

    banner = wait_for(lambda: "DeltaCrown is running" in runner.output() and runner.output(), timeout=30,
                      message="the runner's banner")
    # gunicorn's own report of its socket: loopback only, not every interface
    assert f"Listening at: http://127.0.0.1:{port}" in banner
    assert "0.0.0.0" not in banner
    assert f"{username:<8} {password}" in banner
    redis_url = re.search(r"embedded redis-server \(pid \d+\) at (redis://\S+)", banner).group(1)
    redis = Redis.from_url(redis_url)
    wait_for(lambda: Worker.all(connection=redis), timeout=30, message="the RQ worker to register")

    # the runner's worker runs a job enqueued by another process
    app = make_test_app(f"sqlite:///{tmp_path / 'dev.sqlite'}", redis_url)
    with app.app_context():
        job = ping.enqueue("from the test")
    done = wait_for(lambda: (j := fetch_job(job.id, app)) and j.get_status() == "finished" and j, timeout=60,
                    message="the ping job to finish")
    assert done.return_value()["pong"] == "from the test"
    with app.app_context():
        db.engine.dispose()

    pids = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", banner)}
    pids["redis"] = int(re.search(r"embedded redis-server \(pid (\d+)\)", banner).group(1))
    assert {"web", "worker", "scheduler", "redis"} <= set(pids)

    runner.send_signal(signal.SIGINT)
    assert runner.wait(60) == 0
    log = runner.output()
    assert "web stopped" in log and "worker stopped" in log and "embedded redis-server stopped" in log
    still_running = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert still_running == {}, log[-3000:]


def test_dev_runner_keeps_a_random_secret_key_under_instance(tmp_path):
    from deltacrown.config import DEV_SECRET_KEY
    from deltacrown.devserver import local_secret_key

    key = local_secret_key(tmp_path / "instance")
    assert len(key) >= 32 and key != DEV_SECRET_KEY
    assert local_secret_key(tmp_path / "instance") == key  # kept: sessions survive a restart
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0  # readable by its owner only
    assert local_secret_key(tmp_path / "other") != key


def test_dev_web_binds_loopback_unless_dev_host_says_otherwise():
    from deltacrown.config import ConfigError, load_config
    from deltacrown.devserver import web_command

    assert load_config({})["DEV_HOST"] == "127.0.0.1"
    assert "127.0.0.1:5000" in web_command(load_config({}), 5000, {})
    assert "0.0.0.0:8000" in web_command(load_config({"DEV_HOST": "0.0.0.0"}), 8000, {})
    assert "[::1]:5000" in web_command(load_config({"DEV_HOST": "::1"}), 5000, {})
    with pytest.raises(ConfigError, match="^DEV_HOST: "):
        load_config({"DEV_HOST": "0.0.0.0:5000"})
