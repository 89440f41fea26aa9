"""Job functions for the ops tests (importable by the in-process RQ worker)."""

from deltacrown.queue import QUEUE_DEFAULT, background_job, get_redis, report_progress
from tests.support.processes import wait_for

FLAKY_KEY = "tests:ops:flaky-may-succeed"


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def flaky(value: int) -> dict:
    """Fails until the test sets FLAKY_KEY: a job that can fail once, then succeed."""
    if not get_redis().exists(FLAKY_KEY):
        raise RuntimeError(f"{FLAKY_KEY} is not set yet")
    return {"value": value}


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def succeed(value: int) -> dict:
    return {"doubled": value * 2}


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def fail(reason: str) -> None:
    raise ValueError(reason)


RELEASE_KEY = "tests:ops:release-progress-job"


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def with_progress(done: int, total: int) -> int:
    """Reports `done` of `total`, then holds until the test sets RELEASE_KEY (30 s at most)."""
    report_progress(done, total)
    wait_for(lambda: get_redis().exists(RELEASE_KEY), 30, interval=0.05, message="the test to release the job")
    return total


@background_job(queue=QUEUE_DEFAULT, retry_intervals=None)
def tick() -> dict:
    """A recurring job without arguments, like the real ones."""
    return {"ticked": True}
