"""The RQ worker process: `python worker.py [QUEUE ...]`; `python worker.py --scheduler`
runs the rq-scheduler process instead (see deltacrown.ops.scheduler).

Runs a HerokuWorker (SIGTERM requeues the running job cleanly) with RQ's
scheduler enabled, so retry intervals fire; every job runs in the Flask app
context (see deltacrown.queue.AppJob). If RQ's work loop quits after an error (e.g. Redis
lost while a job runs), the process waits for Redis and works again rather than exit; if
Redis restarts empty while the loop goes on, the worker registers itself again
(deltacrown.queue.RegistrationKeeper).
"""
import logging
import signal
import sys
import time

from redis.exceptions import RedisError

from deltacrown import ConfigError, create_app
from deltacrown.config import load_dotenv_file
from deltacrown.masking import mask_secrets
from deltacrown.queue import (QUEUE_NAMES, RegistrationKeeper, configure_logging, get_redis, make_worker,
                              prepare_for_forking)

log = logging.getLogger("deltacrown.worker")


def database_problem(app) -> str | None:
    """Why the database cannot be used (first line), or None: checked once at start."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from deltacrown.extensions import db

    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
        except OperationalError as exc:
            return str(exc.orig or exc).strip().splitlines()[0]
        finally:
            db.session.remove()
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    load_dotenv_file()
    try:
        app = create_app()
    except ConfigError as exc:
        sys.exit(f"deltacrown worker: configuration error: {exc}")
    configure_logging(app.config["LOG_LEVEL"])
    if argv[:1] == ["--scheduler"]:
        from deltacrown.ops.scheduler import run_scheduler

        return run_scheduler(app)
    queues = argv or list(QUEUE_NAMES)
    unknown = [q for q in queues if q not in QUEUE_NAMES]
    if unknown:
        sys.exit(f"deltacrown worker: unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUE_NAMES)}")
    if not app.config["REDIS_URL"]:
        sys.exit("deltacrown worker: configuration error: REDIS_URL is not set (make run starts a local Redis)")
    try:
        get_redis(app).ping()
    except Exception as exc:  # redis raises several connection error types
        sys.exit(mask_secrets(f"deltacrown worker: REDIS_URL: cannot reach Redis at {app.config['REDIS_URL']}: {exc}"))
    problem = database_problem(app)
    if problem:
        sys.exit(f"deltacrown worker: DATABASE_URL: cannot use the database: {problem}")
    prepare_for_forking(app)
    quit_watch = QuitAfterError()
    logging.getLogger("rq.worker").addHandler(quit_watch)
    while True:
        quit_watch.seen = False
        worker = make_worker(app, queues)
        # Re-registers the worker if Redis restarts empty while it works (else it stays invisible).
        keeper = RegistrationKeeper(worker)
        keeper.start()
        try:
            worker.work(with_scheduler=True, logging_level=app.config["LOG_LEVEL"])
        except RedisError:  # raised by RQ's teardown when Redis went away mid-work
            quit_watch.seen = True
        finally:
            keeper.stop()
        # RQ's work loop quits on any error, a lost Redis included (e.g. while watching a
        # running job), and then returns just as after a stop request. After a stop request
        # (SIGTERM, Ctrl-C) exit; after an error wait for Redis and work again, instead of the
        # process ending quietly during an outage.
        if not quit_watch.seen:
            return 0
        log.warning("the worker quit after an error (lost Redis at %s?); working again once Redis "
                    "answers", app.config["REDIS_URL"])
        wait_for_redis(app)


class QuitAfterError(logging.Handler):
    """Notices RQ's worker quitting after an error: it logs that (ERROR, "... quitting...")
    and then returns from `work()` exactly as it does after a stop request."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.seen = False

    def emit(self, record):
        if "quitting" in record.getMessage():
            self.seen = True


def redis_reachable(app) -> bool:
    try:
        return bool(get_redis(app).ping())
    except RedisError:
        return False


def wait_for_redis(app) -> None:
    """Block until Redis answers (SIGTERM / Ctrl-C meanwhile end the process at once)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    delay = 0.5
    time.sleep(1.0)  # never a tight restart loop
    while not redis_reachable(app):
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


if __name__ == "__main__":
    sys.exit(main())
