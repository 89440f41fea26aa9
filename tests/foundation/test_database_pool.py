"""Pooled PostgreSQL connections: checked before use only after sitting idle a while.

A connection the server dropped while it sat in the pool (a database restart, an idle
timeout) must never reach a request or a job: one idle past DATABASE_PING_AFTER_IDLE_SECONDS
is pinged at checkout and replaced if dead. One given back and taken out again at once (every
request and job transaction under load) is not pinged: that round trip was one in eight of a
request's (bench/FINDINGS.md, round 16)."""
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from deltacrown.extensions import db
from tests.conftest import make_test_app
from tests.support.processes import wait_for

pytestmark = pytest.mark.postgres


def backend_pid(app) -> int:
    """The server process behind the app's pooled connection (given back to the pool after)."""
    with app.app_context():
        try:
            return db.session.scalar(text("SELECT pg_backend_pid()"))
        finally:
            db.session.remove()


def drop_from_server(url: str, pid: int) -> None:
    """What a database restart does to an idle pooled connection: the server ends it
    (from a connection of its own, outside the app's pool)."""
    other = create_engine(url, poolclass=NullPool)

    def alive() -> bool:  # a transaction of its own each time: the view is a snapshot per transaction
        with other.connect() as conn:
            return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}))

    try:
        with other.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        wait_for(lambda: not alive(), timeout=10, message=f"backend {pid} to end")
    finally:
        other.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_a_request_uses_it(postgres_database, redis_url):
    # Every connection counts as idle a while: the dropped one is pinged, found dead, replaced.
    app = make_test_app(postgres_database, redis_url, DATABASE_PING_AFTER_IDLE_SECONDS=0.0)
    first = backend_pid(app)
    drop_from_server(postgres_database, first)

    second = backend_pid(app)  # no error: the request never saw the dead connection
    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(postgres_database, redis_url):
    # Given back and taken out again well inside the idle time: no ping, so the dropped
    # connection is used as it is and that one use fails (the proof no SELECT 1 went first).
    app = make_test_app(postgres_database, redis_url, DATABASE_PING_AFTER_IDLE_SECONDS=3600.0)
    first = backend_pid(app)
    drop_from_server(postgres_database, first)

    with app.app_context():
        with pytest.raises(OperationalError):
            db.session.execute(text("SELECT 1"))
        db.session.remove()
    # SQLAlchemy renewed the pool on that disconnect: the next use gets a live connection.
    assert backend_pid(app) != first
