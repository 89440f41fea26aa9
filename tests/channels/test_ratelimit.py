"""Per-webhook rate limits shared by every worker: the ceiling and Discord's own bucket."""
from __future__ import annotations

import threading
import time

from deltacrown.channels.ratelimit import WebhookRateLimiter
from deltacrown.extensions import db
from deltacrown.models import Team
from deltacrown.queue import get_redis
from tests.channels.conftest import wait_until


def _team(app, captain_id, url, name):
    with app.app_context():
        team = Team(name=name, captain_id=captain_id, discord_webhook_url=url)
        db.session.add(team)
        db.session.commit()
        return team.id


def _max_in_any_window(times, window=1.0):
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_limiter_grants_at_most_five_per_second_across_clients(app):
    """Six independent limiter clients (as on six machines) hammer one key."""
    grants = []
    lock = threading.Lock()

    def client():
        limiter = WebhookRateLimiter(get_redis(app), max_per_second=5)
        for _ in range(4):
            limiter.acquire("shared-hook", max_wait=30)
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(grants) == 24
    assert _max_in_any_window(grants) <= 5


def test_limiter_follows_discord_headers_and_429_blocks(app):
    limiter = WebhookRateLimiter(get_redis(app), max_per_second=100)
    seq = limiter.acquire("hook", max_wait=5)
    limiter.record_response("hook", seq, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.5"})
    granted, wait = limiter.try_acquire("hook")
    assert granted == 0 and 0.3 < wait <= 0.5  # bucket empty: wait for its reset
    start = time.monotonic()
    limiter.acquire("hook", max_wait=5)
    assert time.monotonic() - start >= 0.3
    limiter.block("hook", 0.4)
    granted, wait = limiter.try_acquire("hook")
    assert granted == 0 and 0.2 < wait <= 0.4
    # Unreadable headers are ignored, not fatal.
    limiter.record_response("other", 1, {"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset-After": "nan"})
    assert limiter.try_acquire("other")[0] > 0


def test_several_worker_processes_never_exceed_five_per_second_per_webhook(
        app, users, make, enqueue, discord_server, worker_processes):
    discord_server.bucket_limit, discord_server.bucket_seconds = 1000, 1.0  # only our ceiling applies
    cap = users.create("cap")
    hooks = {81: 16, 82: 8}
    ids = []
    for hook, count in hooks.items():
        team_id = _team(app, cap, discord_server.webhook_url(hook), f"team{hook}")
        ids += [make.delivery("discord", f"team:{team_id}", payload={"type": "roster_changed", "title": f"{hook}-{n}"})
                for n in range(count)]
    enqueue(*ids)
    worker_processes.start(3)
    wait_until(lambda: all(make.get(i).status != "pending" for i in ids), 90, "all deliveries done")
    assert all(make.get(i).status == "sent" for i in ids), worker_processes.logs()
    for hook, count in hooks.items():
        titles = [m["embeds"][0]["title"] for m in discord_server.messages(hook)]
        assert sorted(titles) == sorted(f"👥 {hook}-{n}" for n in range(count))  # each exactly once
        assert discord_server.max_requests_in_window(hook, 1.0) <= 5
    assert discord_server.count_429(81) == 0 and discord_server.violations == []


def test_discord_bucket_of_five_per_two_seconds_sees_few_429s(
        app, users, make, enqueue, discord_server, worker_processes):
    discord_server.bucket_limit, discord_server.bucket_seconds = 5, 2.0  # Discord's real webhook limit
    cap = users.create("cap")
    team_id = _team(app, cap, discord_server.webhook_url(91), "nova")
    ids = [make.delivery("discord", f"team:{team_id}", payload={"type": "roster_changed", "title": f"r{n}"})
           for n in range(15)]
    enqueue(*ids)
    worker_processes.start(3)
    wait_until(lambda: all(make.get(i).status != "pending" for i in ids), 90, "all deliveries done")
    assert all(make.get(i).status == "sent" for i in ids), worker_processes.logs()
    assert len(discord_server.messages(91)) == 15
    assert discord_server.count_429(91) <= 2
    assert discord_server.max_requests_in_window(91, 1.0) <= 5
