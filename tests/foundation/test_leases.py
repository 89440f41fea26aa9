"""Leases (queue.take_lease): one holder at a time. Inside a job the lease names the job, and a
later run of that same job takes over what an earlier run still holds: RQ runs a job again only
once it has judged the earlier run dead or failed, so the retry does not wait out a dead run's
lease. Any other job, or code outside a job, still finds it taken."""
from __future__ import annotations

import uuid

from deltacrown.queue import QUEUE_DEFAULT, background_job, fetch_job, get_queue, take_lease


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def hold(key: str) -> bool:
    """Takes the lease and never releases it, like a run that died holding it."""
    return take_lease(key, 60) is not None


def run(app, run_jobs, key: str, job_id: str | None = None) -> tuple[str, bool]:
    with app.app_context():
        if job_id is None:
            job_id = hold.enqueue(key).id
        else:  # the same job again, as RQ's retry of a dead run puts it back
            get_queue(QUEUE_DEFAULT).enqueue(f"{__name__}.hold", key, job_id=job_id)
    run_jobs()
    job = fetch_job(job_id, app)
    assert job.get_status() == "finished", job.latest_result()
    return job_id, job.return_value()


def test_a_lease_is_taken_over_only_by_a_later_run_of_the_job_holding_it(app, run_jobs):
    key = f"tests:lease:{uuid.uuid4().hex}"
    holder, taken = run(app, run_jobs, key)
    assert taken
    _, taken_by_another_job = run(app, run_jobs, key)
    assert not taken_by_another_job
    with app.app_context():
        assert take_lease(key, 60) is None  # nor outside any job
    _, taken_again = run(app, run_jobs, key, job_id=holder)
    assert taken_again


def test_a_released_lease_is_free_and_a_held_one_is_not(app):
    key = f"tests:lease:{uuid.uuid4().hex}"
    with app.app_context():
        release = take_lease(key, 60)
        assert release is not None and take_lease(key, 60) is None
        release()
        again = take_lease(key, 60)
        assert again is not None
        again()
