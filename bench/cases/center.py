"""Notification center: GET /notifications page 1 and page 50 for a user holding many of many
notifications, vs a trivial route of the same app (Flask test client, in process)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from flask_login import current_user, login_required
from sqlalchemy import select

from .. import seed
from ..harness import BenchEnv, CaseResult, CaseUnavailable, Measurement, count_statements, percentile

TARGET = "p95 ≤ 3× a trivial route; same statement count on page 1 and page 50"
UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)


def trivial():
    # What every logged-in page pays anyway: routing, the session/token user, a response.
    return f"ok {current_user.id}"


def run(env: BenchEnv) -> CaseResult:
    try:
        from deltacrown.notifications.views import PAGE_SIZE
    except ImportError:
        raise CaseUnavailable("the notification center pages are not on main yet") from None
    from deltacrown import create_app
    from deltacrown.api import encode_cursor
    from deltacrown.notifications.models import Notification

    s = env.sizes
    result = CaseResult("center", env.kind, size=f"user with {s.center_user:,} of {s.center_total:,} notifications, "
                        f"{s.center_requests} requests per page", target=TARGET,
                        ratio_label="page p95 / trivial p95, worse page")
    app = create_app(dict(env.config))
    app.add_url_rule("/_bench/trivial", "bench_trivial", login_required(trivial))
    db = env.db
    with app.app_context():
        # The user under test is the first; the rest of the million belongs to 99 others,
        # written interleaved in time so the user's rows are spread over the whole table.
        others = 99
        ids = seed.users(others + 1, with_tokens=True)
        me = ids[0]
        per_other = (s.center_total - s.center_user) // others
        step = timedelta(seconds=1)

        def rows():
            for k in range(max(s.center_user, per_other)):
                at = START + step * k
                if k < s.center_user:
                    yield {"user_id": me, "type": seed.NOTIFICATION_TYPES_USED[k % 5], "title": f"Match {k} <b>done</b>",
                           "body": "Nova 2 – 1 Eclipse", "url": f"/matches/{k}", "is_read": k % 3 == 0,
                           "created_at": at, "read_at": None, "dedup_key": f"bench:{k}"}
                if k < per_other:
                    for uid in ids[1:]:
                        yield {"user_id": uid, "type": "announcement", "title": f"News {k}", "body": "",
                               "url": None, "is_read": False, "created_at": at, "read_at": None,
                               "dedup_key": f"bench:{k}"}

        total = seed.bulk_insert(Notification.__table__, rows())
        env.analyze()
        newest = db.session.scalars(select(Notification.id).where(Notification.user_id == me)
                                    .order_by(Notification.id.desc()).limit((s.center_page - 1) * PAGE_SIZE)).all()
        cursor_page = encode_cursor(newest[-1])  # what page 49's "load more" link carries
        db.session.remove()
    headers = {"Authorization": f"Bearer {seed.user_token(1)}"}
    client = app.test_client()
    urls = {"trivial": "/_bench/trivial", "page 1": "/notifications",
            f"page {s.center_page}": f"/notifications?cursor={cursor_page}"}
    expected_first = {"page 1": f"Match {s.center_user - 1} ", f"page {s.center_page}":
                      f"Match {s.center_user - 1 - (s.center_page - 1) * PAGE_SIZE} "}
    latencies = {name: [] for name in urls}
    statements = {}
    with app.app_context():
        engine = db.engine
    for name, url in urls.items():  # warm-up + statement count + content check
        with count_statements(engine) as counter:
            response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise AssertionError(f"GET {url}: {response.status_code}")
        body = response.get_data(as_text=True)
        if name in expected_first and expected_first[name] + "&lt;b&gt;" not in body:
            raise AssertionError(f"GET {url} does not show the expected newest item {expected_first[name]!r}")
        statements[name] = counter["n"]
    for _ in range(s.center_requests):  # interleaved, so load spikes hit every route alike
        for name, url in urls.items():
            start = time.perf_counter()
            response = client.get(url, headers=headers)
            latencies[name].append(time.perf_counter() - start)
            assert response.status_code == 200
    with app.app_context():
        db.session.remove()

    def m(name):
        p50, p95 = percentile(latencies[name], 50), percentile(latencies[name], 95)
        return Measurement(f"{name}: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms", seconds=latencies[name],
                           value=p95, statements=statements[name],
                           display=f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")

    page1, page_n, base = m("page 1"), m(f"page {s.center_page}"), m("trivial")
    result.ours = Measurement(f"{page1.label}; {page_n.label}", value=max(page1.value, page_n.value),
                              statements=page1.statements,
                              display=f"page 1 {page1.display}; page {s.center_page} {page_n.display}")
    result.baseline = base
    result.ratio = result.ours.value / base.value
    same = statements["page 1"] == statements[f"page {s.center_page}"]
    result.met = result.ratio <= 3.0 and same
    result.notes.append(f"{total:,} notifications seeded; Flask test client in process, Bearer token; "
                        f"trivial route = login_required view returning text (same auth/session path)")
    result.notes.append(f"statements per request: page 1 {statements['page 1']}, page {s.center_page} "
                        f"{statements[f'page {s.center_page}']} ({'same' if same else 'DIFFERENT'}), trivial "
                        f"{statements['trivial']}; each page checked to show its expected newest item, escaped")
    return result
