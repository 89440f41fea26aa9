"""The worker runs a job enqueued from the web process: a real `python worker.py`
subprocess, on the test's Redis and a file SQLite database both processes share."""
import os
import signal

from rq import Worker

from deltacrown.extensions import db
from deltacrown.ops.jobs import ping
from deltacrown.queue import fetch_job, get_redis
from tests.conftest import make_test_app
from tests.support.processes import PYTHON, process_env, wait_for


def test_worker_process_runs_a_job_enqueued_by_the_app(tmp_path, redis_url, spawn):
    database_url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    app = make_test_app(database_url, redis_url)
    with app.app_context():
        db.create_all()
    get_redis(app).flushdb()

    worker = spawn([PYTHON, "worker.py"], env=process_env(DATABASE_URL=database_url, REDIS_URL=redis_url),
                   name="worker")
    with app.app_context():  # stands in for a request in the web process
        job = ping.enqueue("hello")
    assert job.origin == "default"

    def finished():
        assert worker.is_running(), worker.output()
        current = fetch_job(job.id, app)
        return current if current.get_status() == "finished" else None

    done = wait_for(finished, timeout=60, message=f"job {job.id} to finish")
    result = done.return_value()
    assert result["pong"] == "hello"
    assert result["pid"] != os.getpid()  # it ran in the worker's process tree, not here
    assert result["worker"] in {w.name for w in Worker.all(connection=get_redis(app))}

    # SIGTERM (a PaaS restart) stops an idle worker cleanly and deregisters it.
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert Worker.all(connection=get_redis(app)) == []
    assert "Traceback" not in worker.output()
    with app.app_context():
        db.engine.dispose()


def test_a_forked_work_horse_never_shares_the_workers_database_connection(app):
    """worker.py prepares once before forking a horse per job: nothing it set up is redone
    per job, and no pooled connection crosses the fork (two processes on one socket)."""
    from deltacrown.models import Notification
    from deltacrown.queue import prepare_for_forking

    prepare_for_forking(app)
    assert Notification.__mapper__.configured  # mappers configured once, in the parent
    with app.app_context():
        assert db.engine.pool.checkedin() == 0  # the parent holds no connection to hand down
        parent_conn = db.session.connection().connection.dbapi_connection  # the parent connects again
        db.session.remove()  # ...and its connection goes back to the pool, as between jobs
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the horse
        code = 1
        try:
            with app.app_context():
                child_conn = db.session.connection().connection.dbapi_connection
                os.write(write, b"fresh" if child_conn is not parent_conn else b"shared")
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert os.read(read, 16) == b"fresh"
    with app.app_context():  # and the parent's own connection still works
        assert db.session.execute(db.text("SELECT 1")).scalar() == 1
