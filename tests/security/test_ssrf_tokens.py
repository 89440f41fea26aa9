"""Webhook URLs outside DISCORD_API_BASE are refused everywhere a user can enter one, and no
request ever reaches the address (a loopback "trap" server records every hit); unsubscribe
tokens cannot be forged or pointed at another user; API tokens are stored only as hashes."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.notifications.models import NotificationPreference, NotificationPreferenceChange
from deltacrown.notifications.unsubscribe import ALL_EMAIL, _SALT, make_unsubscribe_token
from tests.api.helpers import ApiDriver


class Trap:
    """An HTTP server on loopback that answers 204 to anything and remembers every hit."""

    def __init__(self):
        self.hits: list[tuple[str, str]] = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _hit(self):
                trap.hits.append((self.command, self.path))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _hit

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap():
    server = Trap()
    yield server
    server.stop()


@pytest.fixture
def app_config(discord_server):
    return discord_server.config()


def hostile_urls(discord_server, trap) -> list[str]:
    base = discord_server.base_url  # http://127.0.0.1:<port>/api
    discord_netloc = f"127.0.0.1:{discord_server.port}"
    trap_netloc = f"127.0.0.1:{trap.port}"
    return [
        f"http://{trap_netloc}/api/webhooks/1/abc",  # same host, another port
        f"http://localhost:{discord_server.port}/api/webhooks/1/abc",  # another name for the host
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/",
        "https://discord.com.evil.example/api/webhooks/1/abc",
        "https://discord.com@evil.example/api/webhooks/1/abc",
        f"http://{discord_netloc}@{trap_netloc}/api/webhooks/1/abc",  # userinfo trick, to the trap
        f"http://user:pw@{discord_netloc}/api/webhooks/1/abc",
        f"http://{trap_netloc}\\@{discord_netloc}/api/webhooks/1/abc",  # backslash parser confusion
        f"https://{discord_netloc}/api/webhooks/1/abc",  # other scheme
        f"ftp://{discord_netloc}/api/webhooks/1/abc",
        f"{base}/webhooks/1/abc/../../../../x",
        f"{base}/webhooks/1%2F..%2F..%2Fx/abc",
        f"{base}/webhooks/1/abc?url=http://{trap_netloc}/",
        f"{base}/webhooks/1/abc#http://{trap_netloc}/",
        f"{base}/other/1/abc",
        f"{base}webhooks/1/abc",
        f"{base}/webhooks/abc/def",
        f"//{trap_netloc}/api/webhooks/1/abc",
        "javascript:alert(1)",
        " ",
    ]


def _state(app, user_id):
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
        changes = len(db.session.scalars(select(NotificationPreferenceChange)).all())
        team_hooks = [row[0] for row in db.session.execute(select(db.metadata.tables["teams"].c.discord_webhook_url))]
        db.session.remove()
        return pref.discord_webhook_url, changes, team_hooks


def test_webhook_urls_outside_the_discord_base_are_refused_and_never_called(
        app, client, users, run_jobs, discord_server, trap):
    api = ApiDriver(app, client, users)
    users.create("admin", admin=True)
    ann = users.create("ann")
    team = api.post("/teams", "admin", {"name": "Red", "captain_id": ann}, expect=201).json["id"]
    client.post("/login", data={"username": "ann", "password": users.passwords["ann"]})
    before = _state(app, ann)
    refused = []
    for url in hostile_urls(discord_server, trap):
        answers = {
            "PUT /api/v1/preferences": api.put("/preferences", "ann", {"discord_webhook_url": url}),
            "PUT team webhook": api.put(f"/teams/{team}/discord-webhook", "ann", {"url": url}),
        }
        if url.strip():  # a blank form field means "no webhook" there
            answers["settings form"] = client.post("/settings/notifications", data={"discord_webhook_url": url})
            answers["settings test button"] = client.post("/settings/notifications/discord-test",
                                                          data={"discord_webhook_url": url})
        for where, response in answers.items():
            if response.status_code != 422:
                refused.append(f"{where} {url!r}: {response.status_code}")
            elif where.startswith("PUT"):
                assert "url" in str(response.json["error"]["fields"]), response.json
    assert not refused, refused
    assert _state(app, ann) == before, "a refused webhook URL was saved"
    # the pipeline runs: nothing is posted anywhere but the stand-in's valid webhook
    api.put("/preferences", "ann", {"channels": {"announcement": ["in_app", "discord"]},
                                    "discord_webhook_url": discord_server.webhook_url(7)}, expect=200)
    api.post("/announcements", "admin", {"title": "Hello", "body": "x"}, expect=202)
    run_jobs()
    run_jobs()
    assert len(discord_server.messages(7)) == 1  # positive control: posting does work
    assert trap.hits == [], trap.hits


def _pref(app, user_id):
    with app.app_context():
        pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
        values = (pref.opt_out_email, dict(pref.channels or {}))
        db.session.remove()
        return values


def test_unsubscribe_tokens_cannot_be_forged_or_used_for_another_user(app, client, users):
    ann, bob = users.create("ann"), users.create("bob")
    with app.app_context():
        ann_token = make_unsubscribe_token(ann, ALL_EMAIL)
    bob_before, ann_before = _pref(app, bob), _pref(app, ann)
    head, _, signature = ann_token.rpartition(".")
    # Flip the FIRST character: the last one of a base64 HMAC also holds 2 padding bits,
    # so changing only those (B -> A) can leave the signature valid, and the test flaky.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = [
        f"{head}.{flipped}",  # tampered signature
        URLSafeTimedSerializer("not-the-secret", salt=_SALT).dumps({"u": bob, "t": ALL_EMAIL}),  # wrong key
        URLSafeTimedSerializer("test-secret", salt="another-purpose").dumps({"u": bob, "t": ALL_EMAIL}),
        # bob's id in ann's payload, keeping ann's signature
        ann_token.replace(ann_token.split(".")[0],
                          URLSafeTimedSerializer("x").dumps({"u": bob, "t": ALL_EMAIL}).split(".")[0]),
        "x", "a.b.c",
    ]
    for token in forged:
        for method in ("GET", "POST"):
            response = client.open(f"/unsubscribe/{token}", method=method,
                                   data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 400, (token, method, response.status_code)
            assert "not valid" in response.get_data(as_text=True)
    assert _pref(app, bob) == bob_before and _pref(app, ann) == ann_before
    # ann's real token turns off ann's email only
    assert client.post(f"/unsubscribe/{ann_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _pref(app, ann)[0] is True
    assert _pref(app, bob) == bob_before


def test_api_tokens_are_stored_only_as_hashes(app, client, users):
    api = ApiDriver(app, client, users)
    users.create("admin", admin=True)
    created = api.post("/users", "admin", {"username": "newbie", "email": "newbie@example.com",
                                           "password": "long-enough-pw"}, expect=201).json
    tokens = {"admin": users.tokens["admin"], "newbie": created["api_token"]}
    assert api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['newbie']}"}).status_code == 200
    with app.app_context():
        dump = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                dump.extend(str(value) for value in row)
        db.session.remove()
    text = "\n".join(dump)
    for name, token in tokens.items():
        assert len(token) >= 32
        assert token not in text, f"{name}'s API token is stored in plain text"
        assert hashlib.sha256(token.encode()).hexdigest() in text  # what is stored instead
    assert "long-enough-pw" not in text
