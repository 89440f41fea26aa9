"""Ops test fixtures: an admin session and a test app pointed at a closed Redis port.
The live server, browser page and worker process come from tests/support."""
from __future__ import annotations

import pytest

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
