"""Login brute force is slowed by flask-limiter: failed attempts per attempted username and
per client address, counted in Redis (shared by every web process), a readable 429 page."""
from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from deltacrown import create_app
from deltacrown.accounts.services import create_user
from deltacrown.extensions import db, limiter
from deltacrown.queue import get_redis
from tests.conftest import _reset_schema, make_test_app


def _login(client, username, password, ip="10.0.0.1"):
    return client.post("/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_sixth_failed_attempt_for_a_username_gets_a_readable_429(client, users):
    users.create("bob")
    for n in range(5):
        assert _login(client, "bob", f"wrong-{n}", ip=f"10.0.0.{n}").status_code == 401
    blocked = _login(client, "bob", "wrong-again", ip="10.0.1.1")
    assert blocked.status_code == 429
    page = blocked.get_data(as_text=True)
    assert "Too many failed login attempts" in page and "try again" in page
    assert int(blocked.headers["Retry-After"]) > 0
    # even the right password waits: the attacker cannot tell it was right
    assert _login(client, "bob", users.passwords["bob"], ip="10.0.1.2").status_code == 429
    # other usernames are not locked out by bob's attacker (different address too)
    users.create("amy")
    assert _login(client, "amy", users.passwords["amy"], ip="10.0.2.1").status_code == 302


def test_eleventh_failed_attempt_from_one_address_gets_429(client, users):
    users.create("bob")
    for n in range(10):  # 10 different usernames: under the per-username limit
        assert _login(client, f"guess{n}", "wrong", ip="10.9.9.9").status_code == 401
    assert _login(client, "guess-eleven", "wrong", ip="10.9.9.9").status_code == 429
    # the same address is paused even for a real account
    assert _login(client, "bob", users.passwords["bob"], ip="10.9.9.9").status_code == 429
    # another address is not
    assert _login(client, "bob", users.passwords["bob"], ip="10.9.9.10").status_code == 302


def test_successful_logins_are_never_counted(client, users, auth):
    users.create("bob")
    for _ in range(8):
        assert auth.login("bob").status_code == 302
        auth.logout()


@contextlib.contextmanager
def own_app(database_url, redis_url, **overrides):
    """An app of this test's own config (the shared `app` fixture's config is per module)."""
    app = make_test_app(database_url, redis_url, **overrides)
    _reset_schema(app)
    get_redis(app).flushdb()
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_correct_login_after_the_window_works(database_url, redis_url):
    # In-memory counters follow the (travelled) clock; Redis expires keys on its own clock.
    with own_app(database_url, redis_url, RATELIMIT_STORAGE_URI="memory://") as app:
        with app.app_context():
            create_user("bob", "bob@example.com", password="bob-password")
        client = app.test_client()
        start = datetime.now(timezone.utc)
        with time_machine.travel(start, tick=False) as traveller:
            for n in range(5):
                assert _login(client, "bob", "wrong").status_code == 401
            assert _login(client, "bob", "bob-password").status_code == 429
            traveller.move_to(start + timedelta(seconds=30))
            assert _login(client, "bob", "bob-password").status_code == 429
            traveller.move_to(start + timedelta(seconds=61))
            assert _login(client, "bob", "bob-password").status_code == 302


def test_limits_come_from_config(database_url, redis_url):
    with own_app(database_url, redis_url, LOGIN_RATE_LIMIT_PER_USERNAME="2 per hour") as app:
        with app.app_context():
            create_user("carl", "carl@example.com", password="carl-password")
        client = app.test_client()
        assert _login(client, "carl", "no").status_code == 401
        assert _login(client, "carl", "no").status_code == 401
        assert _login(client, "carl", "carl-password").status_code == 429


def test_counters_live_in_redis_so_every_web_process_shares_them(app, client, users):
    users.create("bob")
    assert _login(client, "bob", "wrong").status_code == 401
    keys = [k.decode() for k in get_redis(app).keys("*deltacrown-limits*")]
    assert any("login-user:bob" in k for k in keys), keys
    assert any("10.0.0.1" in k for k in keys), keys
    assert all(0 < get_redis(app).ttl(k) <= 60 for k in keys)


def test_a_bad_limit_in_the_environment_is_a_config_error():
    from deltacrown.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="LOGIN_RATE_LIMIT_PER_IP"):
        load_config({"LOGIN_RATE_LIMIT_PER_IP": "lots"})


@pytest.fixture
def restore_limiter_storage():
    yield
    # The limiter is one object per process; a real process never changes apps, but this
    # test process does: do not let later tests inherit the "Redis is dead" fallback state.
    limiter._storage_dead = False


def test_login_still_works_when_redis_is_down(tmp_path, restore_limiter_storage):
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "WTF_CSRF_ENABLED": False,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
                      "REDIS_URL": "redis://127.0.0.1:9/0"})  # nothing listens on port 9
    with app.app_context():
        db.create_all()
        create_user("dora", "dora@example.com", password="dora-password")
    client = app.test_client()
    assert _login(client, "dora", "wrong").status_code == 401
    assert _login(client, "dora", "dora-password").status_code == 302
    # and the in-memory fallback still limits
    client2 = app.test_client()
    for _ in range(5):
        _login(client2, "dora", "wrong")
    assert _login(client2, "dora", "wrong").status_code == 429


def test_behind_a_trusted_proxy_the_limit_is_per_client_not_per_router(database_url, redis_url):
    with own_app(database_url, redis_url, TRUSTED_PROXY_COUNT=1) as app:
        client = app.test_client()
        router = {"REMOTE_ADDR": "10.0.0.254"}

        def attempt(client_ip, n=0):  # a new username each time: only the address limit applies
            return client.post("/login", data={"username": f"guess{n}", "password": "wrong"},
                               environ_base=router, headers={"X-Forwarded-For": client_ip})

        for n in range(10):
            assert attempt("203.0.113.7", n).status_code == 401
        assert attempt("203.0.113.7").status_code == 429  # that client is paused...
        assert attempt("198.51.100.9").status_code == 401  # ...not everyone behind the router
