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
