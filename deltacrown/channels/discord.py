"""Discord: one rich embed per message, posted to a webhook with `requests`.

The caller says what the post shows (an `Embed`: plain text, a link, a colour);
this module knows Discord, not what the message is about.

- User text is inert: Discord markdown is escaped (no masked links, no
  formatting), mentions are broken with a zero-width space, and
  `allowed_mentions: {"parse": []}` means even a mention that got through pings nobody.
- Every field is cut to Discord's limits with an ellipsis (lengths counted in
  UTF-16 code units, as Discord's JavaScript does: never under-counted), so a post
  is never rejected for length.
- Posts go only to URLs that pass `webhook_url_problem` (under DISCORD_API_BASE),
  with `?wait=true` so Discord confirms the message and returns its id (which
  `edit_webhook_message` needs to edit it in place: PATCH .../messages/{id}),
  through the shared Redis rate limiter (deltacrown.channels.ratelimit), and
  never follow a redirect (the answer is reported, not obeyed).
- The settings page's test message (`send_test_message`) takes the same path and
  remembers, for a while, a webhook Discord called invalid (401/404), so repeated
  clicks do not add to Discord's count of invalid requests (it bans an IP after
  10,000 in 10 minutes).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import requests
from redis.exceptions import RedisError
from flask import current_app

from ..masking import mask_secrets
from ..queue import get_redis
from .ratelimit import RateLimitWaitTooLong, WebhookRateLimiter, parse_seconds, webhook_key
from .webhooks import webhook_url_problem

LIMITS = {"title": 256, "description": 4096, "field_name": 256, "field_value": 1024, "footer": 2048,
          "author": 256, "fields": 25, "total": 6000, "content": 2000, "username": 80}
ELLIPSIS = "…"
BOT_NAME = "DeltaCrown"
# A 429 whose wait fits in the job's inline wait is retried right here, at most this often.
INLINE_429_RETRIES = 2
# The test message is sent while a person waits for the page: a short rate-limit wait only.
TEST_MESSAGE_MAX_WAIT_SECONDS = 3
# A webhook Discord called invalid (401/404) is not tried again by the test button for this long.
INVALID_WEBHOOK_MEMORY_SECONDS = 10 * 60
TEST_MESSAGE = "Test message from DeltaCrown: your notifications will arrive in this channel."

_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()<#])")
_LINE_START = re.compile(r"^(\s*)([-+]|\d+\.)(\s)", re.MULTILINE)


class DiscordError(Exception):
    """A post failed. `temporary`: retrying may work. `webhook_gone`: Discord says it was deleted."""

    def __init__(self, message: str, temporary: bool, status: int | None = None, webhook_gone: bool = False,
                 rate_limited: bool = False, message_gone: bool = False):
        super().__init__(mask_secrets(message))  # stored in last_error, job results and logs
        self.temporary = temporary
        self.status = status
        self.webhook_gone = webhook_gone
        self.rate_limited = rate_limited  # our limiter or Discord's 429 said wait
        self.message_gone = message_gone  # an edit's message was deleted (the webhook still exists)


# --- making user text inert and short enough -----------------------------------

def escape_text(text: str) -> str:
    """Discord-inert text: markdown escaped, mentions and @everyone broken, control chars dropped."""
    text = "".join(ch for ch in str(text) if ch in "\n\t" or ch >= " ")
    text = _MARKDOWN.sub(r"\\\1", text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}{m.group(3)}", text)
    return text.replace("@", "@\u200b")


def discord_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int) -> str:
    """`text` if it fits in `limit`, else cut with an ellipsis (never splitting an escape)."""
    if discord_length(text) <= limit:
        return text
    kept, used = [], 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > limit - 1:
            break
        kept.append(ch)
        used += width
    cut = "".join(kept)
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]  # a lone trailing backslash would escape the ellipsis
    return cut + ELLIPSIS


def embed_length(embed: dict) -> int:
    """Characters Discord counts towards the 6000 total."""
    total = discord_length(embed.get("title", "")) + discord_length(embed.get("description", ""))
    total += discord_length(embed.get("footer", {}).get("text", ""))
    total += discord_length(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += discord_length(f["name"]) + discord_length(f["value"])
    return total


@dataclass(frozen=True)
class Embed:
    """What one post shows. `title`, `body` and the fields' texts are user text (made
    inert here); `icon` (an emoji before the title) and `footer` are shown as given."""
    title: str
    url: str
    colour: int
    footer: str
    icon: str = ""
    body: str = ""
    timestamp: datetime | None = None
    # [{"name", "value", "inline"?}] below the body.
    fields: tuple = ()


def build_payload(message: Embed, content: str | None = None) -> dict:
    """The webhook body for one message: a single embed, nobody pinged, within every limit."""
    title = escape_text(message.title)
    embed = {
        "title": fit(f"{message.icon} {title}" if message.icon else title, LIMITS["title"]),
        "url": message.url,
        "color": message.colour,
        "footer": {"text": fit(message.footer, LIMITS["footer"])},
    }
    if message.body:
        embed["description"] = fit(escape_text(message.body), LIMITS["description"])
    if message.timestamp is not None:
        embed["timestamp"] = message.timestamp.isoformat()
    fields_ = [{"name": fit(escape_text(f["name"]) or "\u200b", LIMITS["field_name"]),
                "value": fit(escape_text(f["value"]) or "\u200b", LIMITS["field_value"]),
                "inline": bool(f.get("inline"))} for f in message.fields[: LIMITS["fields"]]]
    if fields_:
        embed["fields"] = fields_
    # 6000 in all: shorten the description first, then drop trailing fields.
    excess = embed_length(embed) - LIMITS["total"]
    if excess > 0 and embed.get("description"):
        keep = max(discord_length(embed["description"]) - excess, 1)
        embed["description"] = fit(embed["description"], keep)
    while embed_length(embed) > LIMITS["total"] and embed.get("fields"):
        embed["fields"].pop()
    payload = {"username": BOT_NAME, "embeds": [embed], "allowed_mentions": {"parse": []}}
    if content:
        payload["content"] = fit(escape_text(content), LIMITS["content"])
    return payload


# --- posting -----------------------------------------------------------------

def _body_snippet(response) -> str:
    text = (response.text or "")[:200]
    return " ".join(text.split()) or "(empty body)"


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response, body) -> float:
    """429 wait in seconds: JSON retry_after, else Retry-After, else the bucket reset; 1 s if unreadable."""
    candidates = []
    if isinstance(body, dict):
        candidates.append(body.get("retry_after"))
    candidates += [response.headers.get("Retry-After"), response.headers.get("X-RateLimit-Reset-After")]
    for value in candidates:
        seconds = parse_seconds(value)
        if seconds is not None:
            return seconds
    return 1.0


@dataclass(frozen=True)
class PostResult:
    message_id: str | None
    warning: str | None = None  # set when Discord accepted the post but its answer was unreadable


def post_to_webhook(url: str, payload: dict, max_wait: float | None = None,
                    inline_429_retries: int = INLINE_429_RETRIES) -> PostResult:
    """POST `payload` to the webhook; returns Discord's message id (with a warning if unreadable).

    `max_wait`: the longest rate-limit wait in seconds (default DISCORD_MAX_INLINE_WAIT_SECONDS).
    Raises DiscordError; `temporary` ones (timeout, connection error, 5xx, 429,
    rate-limit wait too long) are worth retrying later.
    """
    return _send("POST", url, url, payload, {"wait": "true"}, max_wait, inline_429_retries)


def edit_webhook_message(url: str, message_id: str, payload: dict, max_wait: float | None = None,
                         inline_429_retries: int = INLINE_429_RETRIES) -> PostResult:
    """Edit a message this webhook posted: `PATCH {url}/messages/{message_id}`, through the same
    URL check, rate limiter (the webhook's own bucket) and 429 handling as a post.

    Raises DiscordError like `post_to_webhook`; a 404 that says the *message* is unknown (Discord
    code 10008: deleted in the channel) has `message_gone` set and `webhook_gone` not, so the
    caller can post it afresh. A 404 for the webhook itself (10015) is `webhook_gone`.
    """
    if not str(message_id).isdigit():
        raise DiscordError(f"refusing to edit: {message_id!r} is not a Discord message id", temporary=False)
    return _send("PATCH", url, f"{url.rstrip('/')}/messages/{message_id}", payload, None, max_wait,
                 inline_429_retries)


UNKNOWN_MESSAGE = 10008  # Discord's JSON error code for a message that does not exist (any more)


def _send(method: str, url: str, request_url: str, payload: dict, params, max_wait, inline_429_retries) -> PostResult:
    """One webhook request (`url` is the webhook's; `request_url` what is requested under it)."""
    problem = webhook_url_problem(url)
    if problem:
        raise DiscordError(f"refusing to post: webhook URL {problem}", temporary=False)
    cfg = current_app.config
    max_wait = cfg["DISCORD_MAX_INLINE_WAIT_SECONDS"] if max_wait is None else max_wait
    key = webhook_key(url)
    limiter = WebhookRateLimiter(get_redis(), cfg["DISCORD_MAX_REQUESTS_PER_SECOND"])
    timeout = cfg["DISCORD_TIMEOUT_SECONDS"]
    verb = "edit" if method == "PATCH" else "post"
    for attempt in range(inline_429_retries + 1):
        try:
            seq = limiter.acquire(key, max_wait=max_wait)
        except RateLimitWaitTooLong as exc:
            raise DiscordError(str(exc), temporary=True, rate_limited=True) from exc
        try:
            response = requests.request(method, request_url, params=params, json=payload, timeout=timeout,
                                        allow_redirects=False, headers={"User-Agent": "DeltaCrown (notifications)"})
        # `from None`: requests' own exception names the full URL, token included; the masked
        # message says what happened and tracebacks (logs, failed jobs) must not carry it.
        except requests.Timeout as exc:
            raise DiscordError(f"Discord did not answer within {timeout} s ({type(exc).__name__})",
                               temporary=True) from None
        except requests.RequestException as exc:
            raise DiscordError(f"could not reach Discord: {type(exc).__name__}: {exc}", temporary=True) from None
        limiter.record_response(key, seq, response.headers)
        status = response.status_code
        body = _json_or_none(response)
        if status == 429:
            wait = _retry_after(response, body)
            is_global = (response.headers.get("X-RateLimit-Global", "").lower() == "true"
                         or (isinstance(body, dict) and body.get("global") is True))
            limiter.block(key, wait, is_global=is_global)
            if attempt < inline_429_retries and wait <= max_wait:
                continue  # the limiter makes the next try wait out the block
            raise DiscordError(f"Discord rate limited the webhook (429, retry after {wait:.2f} s)",
                               temporary=True, status=429, rate_limited=True)
        if 200 <= status < 300:
            if isinstance(body, dict) and body.get("id") is not None:
                return PostResult(message_id=str(body["id"])[:100])
            # Accepted, but unconfirmed: posting again could duplicate it, so it counts as sent.
            what = "body is not JSON" if body is None else "JSON has no message id"
            return PostResult(message_id=None,
                              warning=f"Discord answered {status} but the {what}: {_body_snippet(response)}")
        detail = (body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str)
                  else _body_snippet(response))
        if body is None and status >= 400:
            detail = f"body is not JSON: {detail}"
        if 300 <= status < 400:
            # Never followed: Discord does not redirect webhook posts, so this is not Discord.
            raise DiscordError(f"Discord answered with a redirect ({status}), not followed", temporary=False,
                               status=status)
        if status == 404 and method == "PATCH" and isinstance(body, dict) and body.get("code") == UNKNOWN_MESSAGE:
            raise DiscordError(f"Discord says the message to edit no longer exists (404: {detail})",
                               temporary=False, status=404, message_gone=True)
        if status == 404:
            raise DiscordError(f"Discord says the webhook no longer exists (404: {detail})",
                               temporary=False, status=404, webhook_gone=True)
        if status == 401:
            # The token was reset: this URL can never work again, and Discord bans an address
            # after 10,000 invalid requests in 10 minutes, so it is switched off like a 404.
            raise DiscordError(f"Discord says the webhook token is not valid (401: {detail})",
                               temporary=False, status=401, webhook_gone=True)
        if status >= 500:
            raise DiscordError(f"Discord server error {status}: {detail}", temporary=True, status=status)
        raise DiscordError(f"Discord refused the {verb} ({status}: {detail})", temporary=False, status=status)
    raise AssertionError("unreachable")  # the loop always returns or raises


# --- the settings page's test message -------------------------------------------------

def _invalid_webhook_key(url: str) -> str:
    return "dc:discord:invalid-webhook:" + hashlib.sha256(url.encode()).hexdigest()[:32]


def send_test_message(url: str) -> tuple[str, bool]:
    """Post a short test message to `url`; (message for the person, whether Discord took it).

    Goes through the shared per-webhook rate limiter, waits at most a few seconds,
    never follows a redirect, and does not post again to a webhook Discord recently
    called invalid.
    """
    try:
        redis = get_redis()
        if redis.exists(_invalid_webhook_key(url)):
            return ("Not sent: Discord said a moment ago that this webhook does not exist or its token is not "
                    "valid. Copy the webhook URL from Discord again."), False
        post_to_webhook(url, {"username": BOT_NAME, "content": TEST_MESSAGE, "allowed_mentions": {"parse": []}},
                        max_wait=TEST_MESSAGE_MAX_WAIT_SECONDS, inline_429_retries=0)
    except RedisError:
        return "Not sent: the service cannot check Discord's rate limits right now; try again later.", False
    except DiscordError as exc:
        if exc.status in (401, 404):
            try:
                redis.set(_invalid_webhook_key(url), exc.status, ex=INVALID_WEBHOOK_MEMORY_SECONDS)
            except RedisError:
                pass  # only the memory of it is lost; the answer below still holds
            return ("Discord says this webhook does not exist or its token is not valid (it may have been "
                    "deleted); nothing was sent."), False
        if exc.rate_limited:
            return "Discord is rate-limiting this webhook; nothing was sent. Try again in a minute.", False
        if exc.status is not None and 300 <= exc.status < 400:
            return (f"Not sent: the webhook address answered with a redirect (HTTP {exc.status}), which is "
                    "never followed. Copy the webhook URL from Discord again."), False
        if exc.status is None:
            return "Could not reach Discord; nothing was sent. Try again later.", False
        return f"Discord refused the message (HTTP {exc.status}).", False
    return "Test message sent. Check your Discord channel.", True
