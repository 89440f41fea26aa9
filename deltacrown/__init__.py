"""DeltaCrown automation & notifications: the app factory."""
from __future__ import annotations

import importlib
import os

from flask import Flask

from .config import PROJECT_ROOT, ConfigError, load_config  # noqa: F401  (ConfigError re-exported)
from .extensions import csrf, db, limiter, login_manager, mail, migrate
from .masking import install_log_masking

# The parts of the service, each a package with `init_app(app)`.
PARTS = ("accounts", "teams", "tournaments", "economy", "notifications", "outbox", "channels", "ops")


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
    os.makedirs(app.instance_path, exist_ok=True)
    if app.config.get("TRUSTED_PROXY_COUNT"):
        # Behind a PaaS router the client address is in X-Forwarded-For; without this every
        # client would share the router's address (and one login rate limit).
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import models  # noqa: F401  (register every table with the metadata)

    db.init_app(app)
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

    from . import api

    api.init_app(app)
    # Each part registers its own blueprints and CLI commands.
    for part in PARTS:
        importlib.import_module(f"deltacrown.{part}").init_app(app)

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
