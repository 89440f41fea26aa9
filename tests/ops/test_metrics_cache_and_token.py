"""GET /metrics is computed at most once per 10 s for all web processes (the text is kept
in Redis), and, when METRICS_TOKEN is set, answers only to `Authorization: Bearer <it>`."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from deltacrown.config import ConfigError, load_config
from deltacrown.extensions import db
from deltacrown.queue import get_redis
from tests.conftest import make_test_app
from tests.support.processes import wait_for


def scrape(client, count_queries, headers=None):
    with count_queries() as q:
        response = client.get("/metrics", headers=headers or {})
    return response, len(q.statements)


def test_a_second_scrape_within_ten_seconds_runs_no_sql(app, client, count_queries, database_url, redis_url):
    first, statements = scrape(client, count_queries)
    assert first.status_code == 200 and statements > 0
    second, statements = scrape(client, count_queries)
    assert second.status_code == 200 and statements == 0
    assert second.get_data() == first.get_data()
    # another web process (another app on the same Redis) answers from the same cache
    other = make_test_app(database_url, redis_url)
    statements = []
    with other.app_context():
        engine = db.engine
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        third = other.test_client().get("/metrics")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
        engine.dispose()
    assert third.status_code == 200 and statements == []
    assert third.get_data() == first.get_data()
    with app.app_context():
        assert 0 < get_redis().ttl("deltacrown:metrics") <= 10


class TestExpiry:
    @pytest.fixture
    def app_config(self):
        return {"METRICS_CACHE_SECONDS": 1}

    def test_the_cached_text_expires(self, client, count_queries):
        assert scrape(client, count_queries)[1] > 0
        assert scrape(client, count_queries)[1] == 0
        wait_for(lambda: scrape(client, count_queries)[1] > 0, timeout=10, interval=0.2,
                 message="a scrape after the cache expired to read the database again")


class TestToken:
    @pytest.fixture
    def app_config(self):
        return {"METRICS_TOKEN": "scrape-me-0123456789"}

    @pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer scrape-me-012345678", "Basic scrape-me-0123456789",
                                        "scrape-me-0123456789", "Bearer "])
    def test_without_the_token_it_is_401(self, client, header):
        response = client.get("/metrics", headers={"Authorization": header} if header else {})
        assert response.status_code == 401
        assert "deltacrown_up" not in response.get_data(as_text=True)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    def test_with_the_token_it_answers_and_a_cached_text_is_still_guarded(self, client):
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert ok.status_code == 200 and "deltacrown_up" in ok.get_data(as_text=True)
        assert client.get("/metrics").status_code == 401


def test_settings_are_read_and_checked():
    assert load_config({})["METRICS_TOKEN"] is None
    assert load_config({})["METRICS_CACHE_SECONDS"] == 10
    assert load_config({"METRICS_TOKEN": "t" * 20})["METRICS_TOKEN"] == "t" * 20
    with pytest.raises(ConfigError, match="^METRICS_CACHE_SECONDS: "):
        load_config({"METRICS_CACHE_SECONDS": "-1"})
    with pytest.raises(ConfigError, match="^METRICS_TOKEN: "):
        load_config({"METRICS_TOKEN": "has space"})
