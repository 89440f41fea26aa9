"""Per-webhook rate limits shared by every worker: the ceiling and Discord's own bucket."""
from __future__ import annotations

import threading
import time

from deltacrown.channels.ratelimit import WebhookRateLimiter
from deltacrown.extensions import db
from deltacrown.models import Team
from deltacrown.queue import get_redis
from tests.support.processes import wait_for


def _team(app, captain_id, url, name):
    with app.app_context():
        team = Team(name=name, captain_id=captain_id, discord_webhook_url=url)
        db.session.add(team)
        db.session.commit()
        return team.id


def test_limiter_grants_at_most_five_per_second_across_clients(app):
    """Six independent limiter clients (as on six machines) hammer one key."""
    grants = []
    lock = threading.Lock()

    def client():
        limiter = WebhookRateLimiter(get_redis(app), max_per_second=5)

        def try_once():
            # The grant happened inside [before, after] (one Redis call). A stamp taken after
            # acquire() returns could lag the grant on a loaded machine and fake a burst.
            before = time.monotonic()
            granted, _ = limiter.try_acquire("shared-hook")
            after = time.monotonic()
            if granted:
                with lock:
                    grants.append((before, after))
            return granted

        for _ in range(4):
            wait_for(try_once, timeout=30, interval=0.02, message="a grant from the limiter")

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(grants) == 24
    # Six grants proven to lie within one second (the latest "after" less than a second
    # past the earliest "before") would break the limit.
    by_start = sorted(grants)
    for i in range(len(by_start) - 5):
        six = by_start[i:i + 6]
        assert max(after for _, after in six) - six[0][0] >= 1.0, six
    # And the limiter did not just serialise everything: 24 grants at 5/s take about 4-6 s.
    assert by_start[-1][1] - by_start[0][0] < 10


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
    wait_for(lambda: all(make.get(i).status != "pending" for i in ids), 90, interval=0.1, message="all deliveries done")
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
    wait_for(lambda: all(make.get(i).status != "pending" for i in ids), 90, interval=0.1, message="all deliveries done")
    assert all(make.get(i).status == "sent" for i in ids), worker_processes.logs()
    assert len(discord_server.messages(91)) == 15
    assert discord_server.count_429(91) <= 2
    assert discord_server.max_requests_in_window(91, 1.0) <= 5
