"""DeltaCrown automation & notifications: the app factory."""
from __future__ import annotations

import io
import os

from flask import Flask, has_request_context, request
from werkzeug.exceptions import RequestEntityTooLarge

from .config import PROJECT_ROOT, ConfigError, check_secret_key, load_config  # noqa: F401  (ConfigError re-exported)
from .extensions import csrf, db, limiter, login_manager, mail, migrate
from .links import remembered
from .masking import install_log_masking

def _sqlite_readers_do_not_block_writers(app: Flask) -> None:
    """SQLite in WAL mode, so a worker's commit does not wait for the readers of a polling
    page, nor they for it. In the default rollback journal a commit waits until no one
    reads (SQLite's busy handler sleeps 1, 2, 5, 10 ms... between tries), and a long read
    makes it fail with "database is locked".

    synchronous=NORMAL: in WAL mode a commit then writes the log without an fsync of its
    own (the log is synced at each checkpoint). A commit survives any crash of our
    processes, SIGKILL included; only an OS crash or power loss may undo the last few, and
    the database stays consistent. An fsync cost about 3 ms, and an invite's trip to the
    invitee's list has two commits, the write's and the worker's (bench/FINDINGS.md).
    PostgreSQL, the production database, is not touched."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # a property of the file: every process sees it
        cursor.execute("PRAGMA synchronous=NORMAL")  # per connection
        cursor.close()

    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", on_connect)


def _ping_connections_idle_a_while(app: Flask) -> None:
    """A pooled connection is checked before use only after DATABASE_PING_AFTER_IDLE_SECONDS
    idle (dbutil.ping_connections_idle_for); an engine configured with SQLAlchemy's own
    `pool_pre_ping` (every checkout) is left to it."""
    from .dbutil import ping_connections_idle_for

    if app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}).get("pool_pre_ping"):
        return
    with app.app_context():
        for engine in db.engines.values():
            ping_connections_idle_for(engine, app.config["DATABASE_PING_AFTER_IDLE_SECONDS"])


# Far above what the templates ask for (a few dozen URLs under one script root); a proxy that
# passes on a client's prefix could otherwise grow the memory without end.
REMEMBERED_URLS_MAX = 1024


def _url_for_remembering_fixed_urls(app: Flask):
    """The templates' url_for, remembering the URLs that are the same on every request: an
    endpoint's without arguments and a static file's. Every page's header asks for a dozen;
    building each anew was a fiftieth of a center page. Keyed by the request's script root
    (a proxy may mount the app under a prefix); anything else (arguments, `_external`, a
    blueprint-relative ".name", no request: an email) is built as before."""
    build, built = app.url_for, {}

    def url_for(endpoint: str, **values) -> str:
        if endpoint[:1] == "." or (values and values.keys() != {"filename"}) or not has_request_context():
            return build(endpoint, **values)
        return remembered(built, (request.script_root, endpoint, values.get("filename")),
                          lambda: build(endpoint, **values), REMEMBERED_URLS_MAX)

    url_for.remembered = built
    return url_for


def create_app(config: dict | None = None) -> Flask:
    """Build the app: environment config, then `config` overrides (tests pass theirs)."""
    install_log_masking()  # every process builds the app: no secret reaches its logs
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(load_config())
    if config:
        app.config.update(config)
    check_secret_key(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    if app.config.get("TRUSTED_PROXY_COUNT"):
        # Behind a PaaS router the client address is in X-Forwarded-For; without this every
        # client would share the router's address (and one login rate limit).
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    @app.before_request
    def refuse_oversized_body():
        # First of all hooks, so every route answers 413 alike: a declared length over the
        # limit without waiting for the body; a streamed (chunked) one is read here, one byte
        # past the limit at most. Werkzeug alone would stop reading a streamed body at the
        # limit and parse what it got as if it were all of it (a truncated form is accepted).
        limit = request.max_content_length
        if limit is None:
            return
        if request.content_length is not None:
            if request.content_length > limit:
                raise RequestEntityTooLarge()
            return
        if request.environ.get("wsgi.input_terminated") and request.headers.get("Transfer-Encoding"):
            body = _read_at_most(request.environ["wsgi.input"], limit + 1)
            if len(body) > limit:
                raise RequestEntityTooLarge()
            request.environ["wsgi.input"] = io.BytesIO(body)
            request.environ["CONTENT_LENGTH"] = str(len(body))

    from . import models  # noqa: F401  (register every table with the metadata)

    db.init_app(app)
    _sqlite_readers_do_not_block_writers(app)
    _ping_connections_idle_a_while(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    csrf.init_app(app)
    mail.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)  # a limiter fault never fails a login
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "deltacrown-limits")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)

    @login_manager.request_loader
    def load_user_from_token(req):
        # API clients authenticate with `Authorization: Bearer <token>`.
        header = req.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            from .accounts.services import authenticate_token

            return authenticate_token(header[len("Bearer "):].strip())
        return None

    from . import accounts, api, economy, notifications, ops, outbox, pages, reactions, teams, tournaments

    api.init_app(app)
    # Each part registers its own blueprints, CLI commands and hooks; bottom layer first.
    for part in (outbox, accounts, teams, tournaments, economy, notifications, pages, reactions, ops):
        part.init_app(app)
    app.jinja_env.globals["url_for"] = _url_for_remembering_fixed_urls(app)

    @app.after_request
    def security_headers(response):
        # Only our own scripts and styles; no inline script (htmx is vendored).
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if app.config["PUBLIC_BASE_URL"].startswith("https://"):
            # Browsers then use https only for a year, even when a link or a typed address says
            # http (no first request in the clear to strip cookies from). Not includeSubDomains:
            # other hosts under the domain are not ours to decide for.
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    # Flask's own defaults already hold these keys (SAMESITE None), so setdefault would be a
    # no-op: set them unless the caller's config chose a value.
    secure = app.config["PUBLIC_BASE_URL"].startswith("https://")
    chosen = config or {}
    for key, value in (("SESSION_COOKIE_HTTPONLY", True), ("SESSION_COOKIE_SAMESITE", "Lax"),
                       ("SESSION_COOKIE_SECURE", secure), ("REMEMBER_COOKIE_HTTPONLY", True),
                       ("REMEMBER_COOKIE_SAMESITE", "Lax"), ("REMEMBER_COOKIE_SECURE", secure)):
        if key not in chosen:
            app.config[key] = value
    return app


def _read_at_most(stream, size: int) -> bytes:
    """Up to `size` bytes of a stream (a raw stream's read may return less than asked)."""
    parts, total = [], 0
    while total < size:
        chunk = stream.read(size - total)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)
