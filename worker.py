"""The RQ worker process: `python worker.py [QUEUE ...]`; `python worker.py --scheduler`
runs the rq-scheduler process instead (see deltacrown.ops.scheduler).

Runs a HerokuWorker (SIGTERM requeues the running job cleanly) with RQ's
scheduler enabled, so retry intervals fire; every job runs in the Flask app
context (see deltacrown.queue.AppJob).
"""
import sys

from deltacrown import ConfigError, create_app
from deltacrown.config import load_dotenv_file
from deltacrown.queue import QUEUE_NAMES, configure_logging, get_redis, make_worker


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
        sys.exit(f"deltacrown worker: REDIS_URL: cannot reach Redis at {app.config['REDIS_URL']}: {exc}")
    problem = database_problem(app)
    if problem:
        sys.exit(f"deltacrown worker: DATABASE_URL: cannot use the database: {problem}")
    worker = make_worker(app, queues)
    worker.work(with_scheduler=True, logging_level=app.config["LOG_LEVEL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
