"""The dashboard's forms carry CSRF tokens, and a POST without one changes nothing."""
from __future__ import annotations

import re

import pytest
from rq.registry import FailedJobRegistry

from deltacrown.queue import get_redis

from . import jobs


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)


def test_actions_need_the_csrf_token(app, client, users, run_jobs):
    users.create("root", admin=True)
    login_page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "root", "password": users.passwords["root"],
                                "csrf_token": _token(login_page)})
    with app.app_context():
        job = jobs.fail.enqueue("csrf")
        run_jobs()
    html = client.get("/ops").get_data(as_text=True)
    form = re.search(rf'action="/ops/failed/{job.id}/requeue".*?</form>', html, re.S).group(0)

    assert client.post(f"/ops/failed/{job.id}/requeue").status_code == 400
    with app.app_context():
        assert FailedJobRegistry("default", connection=get_redis()).get_job_ids() == [job.id]

    response = client.post(f"/ops/failed/{job.id}/requeue", data={"csrf_token": _token(form)})
    assert response.status_code == 302
    with app.app_context():
        assert FailedJobRegistry("default", connection=get_redis()).get_job_ids() == []
