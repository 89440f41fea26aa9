"""Gunicorn settings, read automatically from the working directory (Procfile `web`).

Command-line flags (the Procfile's --bind, --workers) still apply; this file only
adds a start-up check, masks secrets in every log line (deltacrown.masking), and
turns off gunicorn's control socket (unused here, and every gunicorn on a machine
would otherwise claim the same ~/.gunicorn/gunicorn.ctl).
"""

from deltacrown.masking import install_log_masking, mask_secrets

control_socket_disable = True

# In the master, before workers fork: every log line, the access log included, has its
# secrets masked (an unsubscribe link's token is in the request line and the Referer).
install_log_masking()


def when_ready(server):
    """Warn once, at start, when Redis is unreachable — but keep serving.

    The web process does not need Redis to accept writes: every domain change
    commits its outbox events with it, and the outbox sweep relays them once
    Redis is back. So an unreachable Redis is a loud warning here, not a reason
    to refuse traffic (the worker, which cannot work without Redis, does stop).
    """
    from redis import Redis

    from deltacrown.config import ConfigError, load_config

    try:
        url = load_config()["REDIS_URL"]
    except ConfigError:
        return  # the app import reports it, with the variable's name
    if not url:
        server.log.warning("REDIS_URL is not set: background jobs will not run; "
                           "domain changes wait in the outbox until it is set")
        return
    try:
        Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except Exception as exc:  # redis raises several connection error types
        server.log.warning("REDIS_URL: cannot reach Redis at %s (%s); serving anyway: domain changes "
                           "wait in the outbox and are relayed when Redis is back", mask_secrets(url), exc)
