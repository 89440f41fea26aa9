"""Secrets never reach logs, stored errors or job results: a Discord webhook's token
(requests puts the whole URL in its exceptions), an unsubscribe link's token (in the
request line of the access log) and the password in REDIS_URL. Real parts: the
Discord stand-in, real RQ jobs, a real gunicorn process."""
from __future__ import annotations

import logging
import urllib.request
import zlib

import pytest

from deltacrown.extensions import db
from deltacrown.masking import mask_secrets
from deltacrown.notifications.unsubscribe import ALL_EMAIL, make_unsubscribe_token
from deltacrown.queue import get_redis
from deltacrown.teams.models import Team
from tests.support.processes import PYTHON, free_port, process_env, run_process, wait_for, wait_for_http

TOKEN = "S3cretT0ken-never_logged"


def _team(app, captain_id, url):
    with app.app_context():
        team = Team(name="Nova", tag="NV", captain_id=captain_id, discord_webhook_url=url)
        db.session.add(team)
        db.session.commit()
        return team.id


def _redis_text(app) -> str:
    """Every value in Redis (job results, failed jobs' tracebacks, ...) as text."""
    redis = get_redis(app)
    chunks = []
    for key in redis.scan_iter():
        kind = redis.type(key)
        if kind == b"string":
            values = [redis.get(key)]
        elif kind == b"hash":
            values = list(redis.hgetall(key).values())
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"zset":
            values = redis.zrange(key, 0, -1)
        elif kind == b"set":
            values = list(redis.smembers(key))
        else:
            values = []
        for value in [key, *values]:
            try:
                value = zlib.decompress(value)  # RQ compresses job data and tracebacks
            except zlib.error:
                pass
            chunks.append(value.decode("utf-8", "replace"))
    return "\n".join(chunks)


@pytest.mark.parametrize("failure", ["connection refused", "timeout", "400", "404"])
def test_a_failed_discord_delivery_never_records_the_webhook_token(
        app, users, make, enqueue, run_jobs, discord_server, caplog, failure):
    caplog.set_level(logging.DEBUG)
    app.config["DELIVERY_RETRY_INTERVALS"] = []  # one try: the failure is final
    cap = users.create("cap")
    if failure == "connection refused":
        base = f"http://127.0.0.1:{free_port()}/api"
        app.config["DISCORD_API_BASE"] = base
        url = f"{base}/webhooks/77/{TOKEN}"
    else:
        url = discord_server.webhook_url(77, token=TOKEN)
        if failure == "timeout":
            discord_server.hang(77)
        elif failure == "404":
            discord_server.delete(77)
        else:
            discord_server.fail_next(77, status=400)
    did = make.delivery("discord", f"team:{_team(app, cap, url)}", payload={"type": "match_result", "title": "2-1"})
    enqueue(did)
    run_jobs()
    delivery = make.get(did)
    assert delivery.status == "failed"
    assert delivery.last_error and TOKEN not in delivery.last_error, delivery.last_error
    if failure == "connection refused":
        assert "could not reach Discord" in delivery.last_error and "/webhooks/77/***" in delivery.last_error
    assert TOKEN not in caplog.text
    assert TOKEN not in _redis_text(app)


def test_logged_redis_and_database_urls_show_no_password(caplog):
    caplog.set_level(logging.INFO)
    from deltacrown.masking import install_log_masking

    install_log_masking()
    log = logging.getLogger("deltacrown.test")
    log.warning("cannot reach Redis at %s", "redis://default:hunter2pass@cache.internal:6379/0")
    try:
        raise ConnectionError("postgresql://app:pg-pass-42@db.internal/app refused")
    except ConnectionError:
        log.exception("database check failed")
    # Werkzeug's dev server request line, as it logs it
    logging.getLogger("werkzeug").info('127.0.0.1 - - [01/Dec/2026 12:00:00] "GET /unsubscribe/eyJ1.abc HTTP/1.1" 200 -')
    assert "hunter2pass" not in caplog.text and "pg-pass-42" not in caplog.text
    assert '"GET /unsubscribe/*** HTTP/1.1" 200' in caplog.text and "eyJ1.abc" not in caplog.text
    assert "redis://default:***@cache.internal:6379/0" in caplog.text
    assert "postgresql://app:***@db.internal/app" in caplog.text
    assert mask_secrets("see /unsubscribe/abc.DEF-1?x=1 and /webhooks/1/tok") == \
        "see /unsubscribe/***?x=1 and /webhooks/1/***"


def test_masking_a_long_line_takes_linear_time():
    # Every log line goes through it, the access log's request line and Referer included:
    # a long run of dotted or hyphenated words must not make it quadratic (it was ~30 s here).
    import time

    line = "a." * 100_000 + " redis://u:pw123@h/0"
    started = time.monotonic()
    masked = mask_secrets(line)
    assert time.monotonic() - started < 2
    assert masked.endswith(" redis://u:***@h/0")


def test_gunicorn_logs_no_unsubscribe_token_and_no_redis_password(app, users, tmp_path, spawn):
    users.create("ann")
    with app.app_context():
        token = make_unsubscribe_token(users.ids["ann"], ALL_EMAIL)
    database = str(app.config["SQLALCHEMY_DATABASE_URI"])
    port = free_port()
    access_log = tmp_path / "access.log"
    env = process_env(DATABASE_URL=database, SECRET_KEY=app.config["SECRET_KEY"],
                      REDIS_URL=f"redis://:hunter2pass@127.0.0.1:{free_port()}/0")
    web = spawn([PYTHON, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                 "--access-logfile", str(access_log)], env=env, name="web")
    wait_for_http(f"http://127.0.0.1:{port}/login", timeout=60, process=web)
    link = f"http://127.0.0.1:{port}/unsubscribe/{token}"
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.status == 200
    confirm = urllib.request.Request(link, data=b"List-Unsubscribe=One-Click", method="POST",
                                     headers={"Referer": link})
    with urllib.request.urlopen(confirm, timeout=10) as response:
        assert response.status == 200
    wait_for(lambda: access_log.exists() and access_log.read_text().count("/unsubscribe/") >= 2,
             timeout=15, message="two unsubscribe lines in the access log")
    lines = access_log.read_text()
    assert token not in lines, lines
    assert "/unsubscribe/***" in lines
    output = web.output()
    assert "REDIS_URL: cannot reach Redis" in output
    assert "hunter2pass" not in output and ":***@127.0.0.1" in output


def test_worker_with_unreachable_redis_does_not_print_its_password(tmp_path):
    env = process_env(DATABASE_URL=f"sqlite:///{tmp_path / 'w.sqlite'}",
                      REDIS_URL=f"redis://:hunter2pass@127.0.0.1:{free_port()}/0")
    result = run_process([PYTHON, "worker.py"], env=env, timeout=60)
    assert result.returncode != 0 and "cannot reach Redis" in result.stderr
    assert "hunter2pass" not in result.stderr and ":***@127.0.0.1" in result.stderr
