"""Configuration from environment variables (and `.env` for local use).

Every variable is listed in the README. `load_config` turns the environment
into Flask config keys and raises `ConfigError` with one readable line when a
value is unusable, so processes can stop with that line instead of a traceback.
"""
from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .masking import mask_secrets

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"
# What SECRET_KEY is when unset: known to everyone, so only acceptable on localhost.
DEV_SECRET_KEY = "dev-only-insecure-secret-key"
LOCAL_HOSTNAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names it."""


def _bool(env, name, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _int(env, name, default, minimum=None, maximum=None):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
    return value


def normalize_database_url(url: str) -> str:
    """Accept the URLs PaaS add-ons hand out (postgres://) and pick our driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def check_database_url(url: str, name: str = "DATABASE_URL") -> str:
    url = normalize_database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{name}: not a database URL: {mask_secrets(url)!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{name}: unsupported database {parsed.get_backend_name()!r} (use postgresql:// or sqlite://)"
        )
    return url


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name}: not a Redis URL (redis://host:port/db): {mask_secrets(url)!r}")
    return url


def _int_list(env, name, default):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    try:
        values = [int(part) for part in raw.split(",")]
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated whole seconds like 10,30,60, got {raw!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{name}: seconds must not be negative, got {raw!r}")
    return values


def check_http_url(url: str, name: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}: expected an http(s) URL, got {url!r}")
    return url.rstrip("/")


def check_token(value: str | None, name: str) -> str | None:
    """A secret sent in an `Authorization: Bearer` header: visible ASCII, no spaces."""
    if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ConfigError(f"{name}: expected visible ASCII characters without spaces")
    return value


def check_bounce_address(value: str | None, name: str) -> str | None:
    """A plain address local@domain, without '+' (that separates the VERP token)."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
        raise ConfigError(f"{name}: expected a plain address like bounces@example.com (letters, digits, '.', "
                          f"'_', '-' before the @; no '+', which separates the per-email token)")
    return value


def check_bind_host(value: str, name: str) -> str:
    """An IP address or host name to listen on (no port: that is PORT)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value):
        raise ConfigError(f"{name}: expected an IP address or host name like 127.0.0.1 or 0.0.0.0, got {value!r}")
    return value


def check_timezone(name_value: str, name: str) -> str:
    try:
        ZoneInfo(name_value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}: unknown IANA time zone {name_value!r}") from None
    return name_value


def check_ca_file(path: str | None, name: str) -> str | None:
    """None, or a readable file of PEM certificates (checked by loading it as TLS trust)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"{name}: no such file: {path!r}")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{name}: not a readable PEM certificate file: {path!r} ({exc})") from None
    return path


def check_rate_limit(value: str, name: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a rate like '5 per minute' or '10/minute', got {value!r}") from None
    return value


def _payout_approval_threshold(env) -> int | None:
    """Coins from which a payout waits for a second admin; None (unset or empty): never."""
    name = "PAYOUT_APPROVAL_THRESHOLD"
    raw = (env.get(name) or "").strip()
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number of coins like 600 (payouts of at least that many "
                          f"coins wait for a second admin), or leave it unset to pay at once; got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name}: must be at least 1 coin, got {value} (leave it unset to turn approval off)")
    return value


def _scheduler_stale_seconds(env) -> int:
    interval = _int(env, "SCHEDULER_INTERVAL", 60, minimum=1)
    stale = _int(env, "SCHEDULER_HEARTBEAT_STALE_SECONDS", 3 * interval, minimum=1)
    if stale <= interval:
        # A heartbeat comes once per interval: a threshold not above it would call a live scheduler dead.
        raise ConfigError(f"SCHEDULER_HEARTBEAT_STALE_SECONDS: must be more than SCHEDULER_INTERVAL ({interval}), "
                          f"got {stale}")
    return stale


def is_local_url(url: str) -> bool:
    return urlparse(url).hostname in LOCAL_HOSTNAMES


def check_secret_key(config) -> None:
    """Off localhost, a missing or development SECRET_KEY would let anyone forge sessions."""
    if config.get("SECRET_KEY") not in (None, "", DEV_SECRET_KEY):
        return
    base = config.get("PUBLIC_BASE_URL") or ""
    if not is_local_url(base):
        raise ConfigError(f"SECRET_KEY: unset or the development default while PUBLIC_BASE_URL ({base}) "
                          "is not localhost; set it to a long random value")


def load_dotenv_file() -> None:
    """Local use: read PROJECT_ROOT/.env into the environment, never overriding a
    variable that is already set. Called by the entry points (app.py, worker.py,
    the dev runner), not by `load_config`, so tests see only what they set."""
    path = PROJECT_ROOT / ".env"
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def load_config(env=None) -> dict:
    """Build the Flask config from an environment mapping (os.environ by default)."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'deltacrown.sqlite'}"
    redis_url = env.get("REDIS_URL") or ""
    config = {
        "SECRET_KEY": env.get("SECRET_KEY") or DEV_SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": check_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # A pooled connection idle longer than this is pinged before use (dbutil.ping_connections_idle_for).
        "DATABASE_PING_AFTER_IDLE_SECONDS": 1.0,
        "REDIS_URL": check_redis_url(redis_url) if redis_url else "",
        "PUBLIC_BASE_URL": check_http_url(env.get("PUBLIC_BASE_URL") or "http://localhost:5000", "PUBLIC_BASE_URL"),
        # Email (Flask-Mail)
        "MAIL_SERVER": env.get("MAIL_SERVER") or "localhost",
        "MAIL_PORT": _int(env, "MAIL_PORT", 25, minimum=1),
        "MAIL_USE_TLS": _bool(env, "MAIL_USE_TLS", False),
        "MAIL_USE_SSL": _bool(env, "MAIL_USE_SSL", False),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER") or "DeltaCrown <noreply@deltacrown.local>",
        "MAIL_SUPPRESS_SEND": _bool(env, "MAIL_SUPPRESS_SEND", False),
        "UNSUBSCRIBE_MAILTO": env.get("UNSUBSCRIBE_MAILTO") or "unsubscribe@deltacrown.local",
        "UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS": _int(env, "UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS", 180, minimum=1),
        "MAIL_TIMEOUT_SECONDS": _int(env, "MAIL_TIMEOUT_SECONDS", 10, minimum=1),
        # The mailbox bounces come back to: each email's return path is bounces+<delivery token>@domain
        # (VERP), so a bounce names the email it is about. Unset: MAIL_DEFAULT_SENDER's address is the
        # return path (no VERP; bounces are matched by the original Message-ID only).
        "MAIL_BOUNCE_ADDRESS": check_bounce_address(env.get("MAIL_BOUNCE_ADDRESS") or None, "MAIL_BOUNCE_ADDRESS"),
        # Bearer token of POST /api/v1/email-events (a provider's bounce/complaint events); unset: refused.
        "EMAIL_EVENTS_TOKEN": check_token(env.get("EMAIL_EVENTS_TOKEN") or None, "EMAIL_EVENTS_TOKEN"),
        # TLS always verifies the server's certificate and name: against the system's CAs, or
        # (for a relay with a private CA) against this PEM file instead.
        "MAIL_TLS_CA_FILE": check_ca_file(env.get("MAIL_TLS_CA_FILE") or None, "MAIL_TLS_CA_FILE"),
        # Logging in to an SMTP server without TLS sends the password in clear text: only on request.
        "MAIL_ALLOW_PLAINTEXT_AUTH": _bool(env, "MAIL_ALLOW_PLAINTEXT_AUTH", False),
        # Discord
        "DISCORD_API_BASE": check_http_url(env.get("DISCORD_API_BASE") or "https://discord.com/api", "DISCORD_API_BASE"),
        "DISCORD_WEBHOOK_URL": env.get("DISCORD_WEBHOOK_URL") or None,
        "DISCORD_MAX_REQUESTS_PER_SECOND": _int(env, "DISCORD_MAX_REQUESTS_PER_SECOND", 5, minimum=1),
        "DISCORD_TIMEOUT_SECONDS": _int(env, "DISCORD_TIMEOUT_SECONDS", 5, minimum=1),
        # A rate-limit wait longer than this is left to the job's next retry instead of sleeping.
        "DISCORD_MAX_INLINE_WAIT_SECONDS": _int(env, "DISCORD_MAX_INLINE_WAIT_SECONDS", 30, minimum=0),
        # send_delivery retries (seconds between tries) for timeouts, 5xx, 429, temporary SMTP errors.
        "DELIVERY_RETRY_INTERVALS": _int_list(env, "DELIVERY_RETRY_INTERVALS", (10, 30, 60, 120, 300)),
        # Deliveries per send_deliveries job (a delivery that fails temporarily continues as its own job).
        "DELIVERY_BATCH_SIZE": _int(env, "DELIVERY_BATCH_SIZE", 100, minimum=1),
        # Jobs
        "SCHEDULER_TIMEZONE": check_timezone(env.get("SCHEDULER_TIMEZONE") or "UTC", "SCHEDULER_TIMEZONE"),
        "RQ_JOB_TIMEOUT": _int(env, "RQ_JOB_TIMEOUT", 30 * 60, minimum=1),
        "RQ_RESULT_TTL": _int(env, "RQ_RESULT_TTL", 60 * 60, minimum=0),
        "RQ_FAILURE_TTL": _int(env, "RQ_FAILURE_TTL", 7 * 24 * 60 * 60, minimum=60),
        # Worker tuning: a worker missing heartbeats for RQ_WORKER_TTL seconds counts as dead; every
        # RQ_MAINTENANCE_INTERVAL seconds a worker requeues the jobs of dead workers (with their retries).
        "RQ_WORKER_TTL": _int(env, "RQ_WORKER_TTL", 35, minimum=16),
        "RQ_MAINTENANCE_INTERVAL": _int(env, "RQ_MAINTENANCE_INTERVAL", 30, minimum=1),
        # A running job's registry entry lives this + 60 s past the last heartbeat (RQ adds the 60):
        # with 10 s, a SIGKILLed worker's job is retried within 10+60 + 30 (maintenance) + 10 (first
        # retry interval) = 110 s at worst; RQ's default 30 s made that 130 s.
        "RQ_JOB_MONITORING_INTERVAL": _int(env, "RQ_JOB_MONITORING_INTERVAL", 10, minimum=1),
        # An unsent digest claim older than this is taken over by the next run (default: RQ_JOB_TIMEOUT,
        # as no live run holds a claim longer).
        "DIGEST_CLAIM_TIMEOUT": _int(env, "DIGEST_CLAIM_TIMEOUT", _int(env, "RQ_JOB_TIMEOUT", 30 * 60, minimum=1),
                                     minimum=1),
        # Recipients per committed chunk of an announcement.
        "ANNOUNCEMENT_CHUNK_SIZE": _int(env, "ANNOUNCEMENT_CHUNK_SIZE", 2000, minimum=1),
        "OUTBOX_SWEEP_AGE_SECONDS": _int(env, "OUTBOX_SWEEP_AGE_SECONDS", 5, minimum=0),
        # How often the scheduler process moves due recurring jobs to their queue.
        "SCHEDULER_INTERVAL": _int(env, "SCHEDULER_INTERVAL", 60, minimum=1),
        # The scheduler writes a heartbeat every SCHEDULER_INTERVAL; one older than this (default:
        # three intervals) means it is dead or stuck (/healthz 503), and a recurring job whose next
        # run is this far in the past is flagged overdue on the ops dashboard.
        "SCHEDULER_HEARTBEAT_STALE_SECONDS": _scheduler_stale_seconds(env),
        # An event relayed this long ago and still unhandled lost its job: the sweep relays it again.
        "OUTBOX_REDELIVER_AGE_SECONDS": _int(env, "OUTBOX_REDELIVER_AGE_SECONDS", 15 * 60, minimum=1),
        # Daily retention (prune-records): handled outbox events, finished deliveries and digests
        # older than this many days are deleted (at most 100 years: the cutoff date must exist).
        "RETENTION_DAYS": _int(env, "RETENTION_DAYS", 90, minimum=1, maximum=36_500),
        # Match reminders go out this many minutes before a match (never for a time already past).
        "MATCH_REMINDER_MINUTES": _int(env, "MATCH_REMINDER_MINUTES", 60, minimum=1, maximum=7 * 24 * 60),
        # Money: coins paid per place (integers only).
        "PAYOUT_TABLE": {1: 1000, 2: 500, 3: 250},
        # A payout of at least this many coins is held until a second admin approves it (None: off).
        "PAYOUT_APPROVAL_THRESHOLD": _payout_approval_threshold(env),
        # true: the admin who completed the tournament may approve its payouts (a platform with one
        # admin); the audit trail marks such an approval as self-approved.
        "PAYOUT_APPROVAL_ALLOW_SELF": _bool(env, "PAYOUT_APPROVAL_ALLOW_SELF", False),
        "INVITE_EXPIRY_DAYS": _int(env, "INVITE_EXPIRY_DAYS", 7, minimum=1),
        # Largest request body in bytes (Flask's own key): a larger one is refused with 413.
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1),
        # GET /metrics: seconds a computed scrape is reused (0: never); the Bearer token it
        # requires (unset: open, e.g. behind a private network).
        "METRICS_CACHE_SECONDS": _int(env, "METRICS_CACHE_SECONDS", 10, minimum=0),
        "METRICS_TOKEN": check_token(env.get("METRICS_TOKEN") or None, "METRICS_TOKEN"),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
        # Where `make run`'s web process listens: loopback only, unless told otherwise (0.0.0.0).
        "DEV_HOST": check_bind_host(env.get("DEV_HOST") or "127.0.0.1", "DEV_HOST"),
        # How many reverse proxies (a PaaS router) stand in front of the web process; their
        # X-Forwarded-* headers are trusted for that many hops. 0: none (direct connections).
        "TRUSTED_PROXY_COUNT": _int(env, "TRUSTED_PROXY_COUNT", 0, minimum=0),
        # Login brute force: failed POST /login attempts allowed per client address and per
        # attempted username (limits notation), shared across processes through Redis.
        "LOGIN_RATE_LIMIT_PER_IP": check_rate_limit(env.get("LOGIN_RATE_LIMIT_PER_IP") or "10 per minute",
                                                    "LOGIN_RATE_LIMIT_PER_IP"),
        "LOGIN_RATE_LIMIT_PER_USERNAME": check_rate_limit(env.get("LOGIN_RATE_LIMIT_PER_USERNAME") or "5 per minute",
                                                          "LOGIN_RATE_LIMIT_PER_USERNAME"),
        # "Send a test message" on the settings page: clicks allowed per person (shared through Redis).
        "WEBHOOK_TEST_RATE_LIMIT": check_rate_limit(env.get("WEBHOOK_TEST_RATE_LIMIT") or "5 per minute;20 per hour",
                                                    "WEBHOOK_TEST_RATE_LIMIT"),
    }
    if config["MAIL_USERNAME"] and not (config["MAIL_USE_TLS"] or config["MAIL_USE_SSL"]
                                        or config["MAIL_ALLOW_PLAINTEXT_AUTH"]):
        raise ConfigError("MAIL_USERNAME: logging in to the SMTP server without TLS would send the password "
                          "in clear text; set MAIL_USE_TLS=true (STARTTLS) or MAIL_USE_SSL=true, or "
                          "MAIL_ALLOW_PLAINTEXT_AUTH=true for a server on a trusted network")
    if config["DISCORD_WEBHOOK_URL"]:
        config["DISCORD_WEBHOOK_URL"] = check_http_url(config["DISCORD_WEBHOOK_URL"], "DISCORD_WEBHOOK_URL")
    return config
