"""Per-webhook rate limiting shared by every worker on every machine (Redis).

Two limits apply to each webhook, both checked in one atomic Lua script using
Redis's clock (so workers on different machines agree on "now"):

1. A hard ceiling: at most DISCORD_MAX_REQUESTS_PER_SECOND requests in any
   one-second window (a sorted set of send times, sliding window). The window
   is padded slightly so that jitter between "allowed" and "arrived at Discord"
   cannot squeeze six requests into one real second.
2. Discord's own bucket, as its last answers described it
   (X-RateLimit-Remaining / X-RateLimit-Reset-After), plus any 429 Retry-After
   block. Each granted request takes a sequence number; when an answer comes
   back, requests granted after it (still in flight, so not yet counted in the
   answer's "remaining") are subtracted, so several workers do not overshoot
   Discord's bucket between answers. That keeps 429s the exception.

`acquire` waits (sleeps) until a slot is free, or raises RateLimitWaitTooLong
when the wait would exceed the caller's bound (the job then retries later).
"""
from __future__ import annotations

import hashlib
import math
import re
import time
import uuid

# Padding on the one-second window (see 1. above).
WINDOW_SAFETY_SECONDS = 0.25
# Two answers whose reset times differ by less than this describe the same Discord bucket window.
SAME_WINDOW_TOLERANCE_SECONDS = 0.25
_KEY_PREFIX = "dc:discord:rl"
_STATE_TTL_MS = 60 * 60 * 1000

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local g = tonumber(redis.call('GET', KEYS[3]) or '0')
if g > now then return {0, math.ceil((g - now) * 1000)} end
local b = redis.call('HMGET', KEYS[2], 'remaining', 'reset_at', 'blocked_until')
local remaining, reset_at, blocked = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
if blocked and blocked > now then return {0, math.ceil((blocked - now) * 1000)} end
local known = reset_at ~= nil and reset_at > now and remaining ~= nil
if known and remaining <= 0 then return {0, math.ceil((reset_at - now) * 1000)} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, math.ceil((tonumber(oldest[2]) + window - now) * 1000))}
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. seq)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
if known then redis.call('HSET', KEYS[2], 'remaining', remaining - 1) end
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
return {seq, 0}
"""

_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seq = tonumber(ARGV[1])
local est = tonumber(ARGV[2])
local new_reset = now + tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'remaining', 'reset_at', 'seq')
local old_rem, old_reset, cur_seq = tonumber(b[1]), tonumber(b[2]), tonumber(b[3] or ARGV[1])
-- requests granted after this one were not counted in Discord's answer yet
est = est - math.max(0, cur_seq - seq)
if old_reset ~= nil and old_reset > now and new_reset <= old_reset + tolerance then
  -- same bucket window as we already know: keep the more cautious view
  if old_rem ~= nil and old_rem < est then est = old_rem end
  if old_reset > new_reset then new_reset = old_reset end
end
redis.call('HSET', KEYS[1], 'remaining', est, 'reset_at', new_reset)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return est
"""

_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untilv = now + tonumber(ARGV[1])
if ARGV[2] == '1' then
  local g = tonumber(redis.call('GET', KEYS[2]) or '0')
  if untilv > g then redis.call('SET', KEYS[2], untilv, 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000) end
else
  local old = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
  if untilv > old then redis.call('HSET', KEYS[1], 'blocked_until', untilv) end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
"""

_WEBHOOK_ID = re.compile(r"/webhooks/(\d+)/")


class RateLimitWaitTooLong(Exception):
    """The webhook is rate limited for longer than this job may wait; try again later."""

    def __init__(self, wait_seconds: float):
        super().__init__(f"Discord webhook rate limited for another {wait_seconds:.1f} s")
        self.wait_seconds = wait_seconds


def webhook_key(url: str) -> str:
    """Rate-limit identity of a webhook: its id (the token may be re-issued), else a hash."""
    match = _WEBHOOK_ID.search(url)
    return match.group(1) if match else hashlib.sha256(url.encode()).hexdigest()[:32]


def parse_seconds(value, default: float | None = None, maximum: float = 3600.0) -> float | None:
    """A seconds value from a header or JSON body, read defensively (float, finite, clamped)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    if not math.isfinite(seconds) or seconds < 0:
        return default
    return min(seconds, maximum)


class WebhookRateLimiter:
    def __init__(self, redis, max_per_second: int):
        self.redis = redis
        self.max_per_second = max_per_second
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_RECORD)
        self._block = redis.register_script(_BLOCK)
        self._owner = uuid.uuid4().hex[:12]

    @staticmethod
    def _keys(key: str) -> tuple[str, str, str]:
        return f"{_KEY_PREFIX}:{key}:sent", f"{_KEY_PREFIX}:{key}:bucket", f"{_KEY_PREFIX}:global"

    def try_acquire(self, key: str) -> tuple[int, float]:
        """(sequence number, 0) when a request may go now, else (0, seconds to wait)."""
        seq, wait_ms = self._acquire(keys=list(self._keys(key)),
                                     args=[self.max_per_second, 1.0 + WINDOW_SAFETY_SECONDS,
                                           self._owner, _STATE_TTL_MS])
        return int(seq), int(wait_ms) / 1000.0

    def acquire(self, key: str, max_wait: float) -> int:
        """Wait for a slot (at most `max_wait` seconds in all); returns the request's sequence number."""
        deadline = time.monotonic() + max_wait
        while True:
            seq, wait = self.try_acquire(key)
            if seq:
                return seq
            if time.monotonic() + wait > deadline:
                raise RateLimitWaitTooLong(wait)
            time.sleep(wait)  # a rate-limit wait, bounded by max_wait

    def record_response(self, key: str, seq: int, headers) -> None:
        """Remember Discord's bucket state from an answer's X-RateLimit-* headers."""
        remaining = parse_seconds(headers.get("X-RateLimit-Remaining"), maximum=1e9)
        reset_after = parse_seconds(headers.get("X-RateLimit-Reset-After"))
        if remaining is None or reset_after is None:
            return
        _, bucket, _ = self._keys(key)
        self._record(keys=[bucket], args=[seq, int(remaining), reset_after,
                                          SAME_WINDOW_TOLERANCE_SECONDS, _STATE_TTL_MS])

    def block(self, key: str, seconds: float, is_global: bool = False) -> None:
        """Honour a 429: nobody posts to this webhook (or anywhere, if global) for `seconds`."""
        _, bucket, global_key = self._keys(key)
        self._block(keys=[bucket, global_key], args=[seconds, "1" if is_global else "0", _STATE_TTL_MS])
