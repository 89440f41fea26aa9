"""A real HTTP server on loopback standing in for Discord's webhook API.

Fixture `discord_server` (function scope) yields a `DiscordStandIn` serving
`POST /api/webhooks/<id>/<token>` like Discord does:

- checks every payload against Discord's limits (title 256, description 4096,
  25 fields, field name 256 / value 1024, footer 2048, author 256, 6000 in all,
  content 2000, username 80; lengths in UTF-16 units) and that it pings nobody
  (`allowed_mentions.parse == []`); a bad payload gets Discord's 400 and is kept
  in `.violations`;
- a per-webhook bucket like Discord's (default 5 requests per 2 s, window
  starting with the first request), sent as X-RateLimit-* headers; over it:
  429 with `retry_after` (JSON) and `Retry-After`;
- `?wait=true`: 200 with the message object (`id`); otherwise 204;
- `PATCH /webhooks/{id}/{token}/messages/{message_id}` edits a message the webhook posted,
  by Discord's rules: 404 Unknown Webhook (10015) for a deleted webhook, 404 Unknown Message
  (10008) for a message id it never posted or that was deleted (`delete_message(id, mid)`),
  the same body checks, rate limit and faults as a post; 200 with the message. Accepted
  edits are recorded (`.edits(id)`); `.current(id)` is what each message shows now;
- records every request's arrival time per webhook (`.arrivals(id)`), and
  accepted messages (`.messages(id)`).

Faults on demand: `fail_next(id, status=500, times=1)`, `rate_limit_next(id, retry_after)`,
`delete(id)` (404 Unknown Webhook), `hang(id)` (never answers until the test
ends), `garbage_next(id, status=200)` (a body that is not JSON),
`redirect_next(id, location, status=307)` (a redirect, as a hijacked or
misconfigured endpoint could answer). `.requests` lists every request's
(method, path), any path at all, so a test can see that a redirect was not followed.

    @pytest.fixture
    def app_config(discord_server):
        return discord_server.config()      # {"DISCORD_API_BASE": "http://127.0.0.1:<port>/api"}

    url = discord_server.webhook_url(1)     # a valid webhook URL under that base
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

LIMITS = {"title": 256, "description": 4096, "fields": 25, "field_name": 256, "field_value": 1024,
          "footer": 2048, "author": 256, "total": 6000, "content": 2000, "username": 80, "embeds": 10}
_PATH = re.compile(r"^/api/webhooks/(\d+)/([A-Za-z0-9_\-]+)/?$")
_MESSAGE_PATH = re.compile(r"^/api/webhooks/(\d+)/([A-Za-z0-9_\-]+)/messages/(\d+)/?$")


def discord_length(text) -> int:
    return len(str(text).encode("utf-16-le")) // 2


def payload_problems(payload) -> list[str]:
    """Everything Discord would reject in a webhook body (plus: it must ping nobody)."""
    if not isinstance(payload, dict):
        return ["body is not a JSON object"]
    problems = []
    content, embeds = payload.get("content"), payload.get("embeds") or []
    if not content and not embeds:
        problems.append("empty message: no content and no embeds")
    if content is not None and discord_length(content) > LIMITS["content"]:
        problems.append(f"content longer than {LIMITS['content']}")
    if discord_length(payload.get("username", "")) > LIMITS["username"]:
        problems.append("username too long")
    if not isinstance(embeds, list) or len(embeds) > LIMITS["embeds"]:
        problems.append("embeds must be a list of at most 10")
        embeds = []
    total = 0
    for n, embed in enumerate(embeds):
        for key, limit in (("title", "title"), ("description", "description")):
            value = embed.get(key, "")
            total += discord_length(value)
            if discord_length(value) > LIMITS[limit]:
                problems.append(f"embeds[{n}].{key} longer than {LIMITS[limit]}")
        footer = (embed.get("footer") or {}).get("text", "")
        author = (embed.get("author") or {}).get("name", "")
        total += discord_length(footer) + discord_length(author)
        if discord_length(footer) > LIMITS["footer"]:
            problems.append(f"embeds[{n}].footer.text longer than {LIMITS['footer']}")
        if discord_length(author) > LIMITS["author"]:
            problems.append(f"embeds[{n}].author.name longer than {LIMITS['author']}")
        fields = embed.get("fields") or []
        if len(fields) > LIMITS["fields"]:
            problems.append(f"embeds[{n}] has more than {LIMITS['fields']} fields")
        for m, field in enumerate(fields):
            name, value = field.get("name", ""), field.get("value", "")
            total += discord_length(name) + discord_length(value)
            if not name or not value:
                problems.append(f"embeds[{n}].fields[{m}] needs a name and a value")
            if discord_length(name) > LIMITS["field_name"]:
                problems.append(f"embeds[{n}].fields[{m}].name longer than {LIMITS['field_name']}")
            if discord_length(value) > LIMITS["field_value"]:
                problems.append(f"embeds[{n}].fields[{m}].value longer than {LIMITS['field_value']}")
        url = embed.get("url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            problems.append(f"embeds[{n}].url is not a URL")
        if "color" in embed and not (isinstance(embed["color"], int) and 0 <= embed["color"] <= 0xFFFFFF):
            problems.append(f"embeds[{n}].color is not a colour")
    if total > LIMITS["total"]:
        problems.append(f"embeds have {total} characters in all, more than {LIMITS['total']}")
    if (payload.get("allowed_mentions") or {}).get("parse", None) != []:
        problems.append("allowed_mentions.parse is not [] (the message could ping people)")
    return problems


class _Webhook:
    def __init__(self):
        self.arrivals: list[float] = []  # every request, time.monotonic()
        self.messages: list[dict] = []  # accepted payloads, with "id"
        self.edits: list[dict] = []  # accepted edits (PATCH .../messages/{id}): the payload, with "id"
        self.current: dict[str, dict] = {}  # message id -> what the message shows now
        self.window_start: float | None = None
        self.window_count = 0
        self.faults: list[tuple] = []  # queued one-shot faults
        self.deleted = False
        self.hanging = False
        self.rejected_429 = 0


class DiscordStandIn:
    def __init__(self, bucket_limit: int = 5, bucket_seconds: float = 2.0):
        self.bucket_limit = bucket_limit
        self.bucket_seconds = bucket_seconds
        self.violations: list[tuple[str, list[str], dict]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, any path
        self._hooks: dict[str, _Webhook] = defaultdict(_Webhook)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._release = threading.Event()
        self._ids = itertools.count(1_300_000_000_000_000_000)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                stand_in._record(self)
                stand_in._handle(self)

            def do_PATCH(self):
                stand_in._record(self)
                stand_in._handle(self)

            def do_GET(self):
                stand_in._record(self)
                self._send(405, {"message": "405: Method Not Allowed", "code": 0})

            def _send(self, status, body=None, headers=None, raw: bytes | None = None):
                data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
                self.send_response(status)
                if raw is None and body is not None:
                    self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle and config ---------------------------------------------------
    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def config(self) -> dict:
        return {"DISCORD_API_BASE": self.base_url}

    def env(self) -> dict:
        return {"DISCORD_API_BASE": self.base_url}

    def webhook_url(self, webhook_id, token: str = "token-abc") -> str:
        return f"{self.base_url}/webhooks/{webhook_id}/{token}"

    # --- faults -------------------------------------------------------------------
    def fail_next(self, webhook_id, status: int = 500, times: int = 1):
        with self._lock:
            self._hooks[str(webhook_id)].faults += [("status", status)] * times

    def rate_limit_next(self, webhook_id, retry_after: float = 0.3, times: int = 1, in_header_only=False):
        with self._lock:
            self._hooks[str(webhook_id)].faults += [("429", retry_after, in_header_only)] * times

    def garbage_next(self, webhook_id, status: int = 200, times: int = 1):
        with self._lock:
            self._hooks[str(webhook_id)].faults += [("garbage", status)] * times

    def redirect_next(self, webhook_id, location: str, status: int = 307, times: int = 1):
        with self._lock:
            self._hooks[str(webhook_id)].faults += [("redirect", status, location)] * times

    def delete(self, webhook_id):
        with self._lock:
            self._hooks[str(webhook_id)].deleted = True

    def forget(self, webhook_id):
        """Forget what this webhook received so far (a test's setup posts); it stays as it is."""
        with self._lock:
            hook = self._hooks[str(webhook_id)]
            hook.messages.clear()
            hook.edits.clear()

    def delete_message(self, webhook_id, message_id):
        """Someone deleted the message in the channel: editing it is 404 Unknown Message (10008)."""
        with self._lock:
            self._hooks[str(webhook_id)].current.pop(str(message_id), None)

    def hang(self, webhook_id):
        """Requests to this webhook get no answer until the test ends."""
        with self._lock:
            self._hooks[str(webhook_id)].hanging = True

    # --- what arrived -------------------------------------------------------------
    def messages(self, webhook_id) -> list[dict]:
        with self._lock:
            return list(self._hooks[str(webhook_id)].messages)

    def edits(self, webhook_id) -> list[dict]:
        with self._lock:
            return list(self._hooks[str(webhook_id)].edits)

    def current(self, webhook_id) -> dict[str, dict]:
        """{message id: what it shows now} of the messages still in the channel."""
        with self._lock:
            return dict(self._hooks[str(webhook_id)].current)

    def wait_for_edits(self, webhook_id, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._hooks[str(webhook_id)].edits) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self._hooks[str(webhook_id)].edits)
                    raise AssertionError(f"webhook {webhook_id}: expected {count} edits within {timeout} s, got {got}")
                self._changed.wait(left)
            return list(self._hooks[str(webhook_id)].edits)

    def arrivals(self, webhook_id) -> list[float]:
        with self._lock:
            return list(self._hooks[str(webhook_id)].arrivals)

    def count_429(self, webhook_id) -> int:
        with self._lock:
            return self._hooks[str(webhook_id)].rejected_429

    def max_requests_in_window(self, webhook_id, window: float = 1.0) -> int:
        """The most requests this webhook saw in any `window` seconds (half-open windows)."""
        times = sorted(self.arrivals(webhook_id))
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def wait_for_messages(self, webhook_id, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._hooks[str(webhook_id)].messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self._hooks[str(webhook_id)].messages)
                    raise AssertionError(f"webhook {webhook_id}: expected {count} messages within {timeout} s, got {got}")
                self._changed.wait(left)
            return list(self._hooks[str(webhook_id)].messages)

    # --- the webhook endpoint -------------------------------------------------------
    def _record(self, req):
        with self._lock:
            self.requests.append((req.command, urlsplit(req.path).path))

    def _bucket_headers(self, hook: _Webhook, now: float) -> dict:
        reset_after = max(hook.window_start + self.bucket_seconds - now, 0.0)
        return {"X-RateLimit-Limit": str(self.bucket_limit),
                "X-RateLimit-Remaining": str(max(self.bucket_limit - hook.window_count, 0)),
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Bucket": "standin-bucket"}

    def _handle(self, req):
        parts = urlsplit(req.path)
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        edit_id = None
        if req.command == "PATCH":
            match = _MESSAGE_PATH.match(parts.path)
            edit_id = match.group(3) if match else None
        else:
            match = _PATH.match(parts.path)
        if not match:
            if req.command == "PATCH" and _PATH.match(parts.path):
                return req._send(405, {"message": "405: Method Not Allowed", "code": 0})
            return req._send(404, {"message": "404: Not Found", "code": 0})
        webhook_id = match.group(1)
        wait = parse_qs(parts.query).get("wait", ["false"])[0].lower() == "true"
        with self._changed:
            now = time.monotonic()
            hook = self._hooks[webhook_id]
            hook.arrivals.append(now)
            self._changed.notify_all()
            if hook.hanging:
                hanging = True
            else:
                hanging = False
        if hanging:
            self._release.wait(60)
            return
        with self._changed:
            now = time.monotonic()
            hook = self._hooks[webhook_id]
            if hook.deleted:
                return req._send(404, {"message": "Unknown Webhook", "code": 10015})
            if hook.window_start is None or now >= hook.window_start + self.bucket_seconds:
                hook.window_start, hook.window_count = now, 0
            fault = hook.faults.pop(0) if hook.faults else None
            over_limit = hook.window_count >= self.bucket_limit
            if over_limit and fault and fault[0] != "429":
                hook.faults.insert(0, fault)  # keep it for a request Discord would accept
                fault = None
            if (fault and fault[0] == "429") or over_limit:
                hook.rejected_429 += 1
                if fault and fault[0] == "429":
                    retry_after, header_only = fault[1], fault[2]
                else:
                    retry_after, header_only = max(hook.window_start + self.bucket_seconds - now, 0.001), False
                headers = {**self._bucket_headers(hook, now), "Retry-After": f"{retry_after:.3f}"}
                body = None if header_only else {"message": "You are being rate limited.",
                                                 "retry_after": round(retry_after, 3), "global": False}
                return req._send(429, body, headers=headers, raw=b"" if header_only else None)
            hook.window_count += 1
            headers = self._bucket_headers(hook, now)
            if fault and fault[0] == "status":
                return req._send(fault[1], {"message": "stand-in failure", "code": 0}, headers=headers)
            if fault and fault[0] == "redirect":
                return req._send(fault[1], {"message": "moved"}, headers={**headers, "Location": fault[2]})
            if fault and fault[0] == "garbage":
                return req._send(fault[1], headers={**headers, "Content-Type": "text/html"},
                                 raw=b"<html><body>502 Bad Gateway (not JSON)</body></html>")
            try:
                payload = json.loads(raw or b"null")
            except ValueError:
                payload = None
            if edit_id is not None and edit_id not in hook.current:
                return req._send(404, {"message": "Unknown Message", "code": 10008}, headers=headers)
            problems = payload_problems(payload)
            if problems:
                self.violations.append((webhook_id, problems, payload))
                return req._send(400, {"code": 50035, "message": "Invalid Form Body", "errors": problems},
                                 headers=headers)
            if edit_id is not None:  # an edit answers 200 with the message, ?wait or not
                message = {"id": edit_id, "webhook_id": webhook_id, "type": 0,
                           "content": payload.get("content", hook.current[edit_id].get("content", "")),
                           "embeds": payload.get("embeds", hook.current[edit_id].get("embeds", [])),
                           "edited_timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
                hook.current[edit_id] = {**hook.current[edit_id], **payload, "id": edit_id}
                hook.edits.append({**payload, "id": edit_id})
                self._changed.notify_all()
                return req._send(200, message, headers=headers)
            message = {"id": str(next(self._ids)), "webhook_id": webhook_id, "type": 0,
                       "content": payload.get("content", ""), "embeds": payload.get("embeds", []),
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
            hook.messages.append({**payload, "id": message["id"]})
            hook.current[message["id"]] = {**payload, "id": message["id"]}
            self._changed.notify_all()
        if wait:
            return req._send(200, message, headers=headers)
        return req._send(204, None, headers=headers)


@pytest.fixture
def discord_server():
    stand_in = DiscordStandIn().start()
    yield stand_in
    stand_in.stop()
