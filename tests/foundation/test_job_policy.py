"""The job decorator: its policy, the job registry, domain errors as results, and an unbound job."""
import pytest
from redis import Redis

from deltacrown.errors import NotFound
from deltacrown.queue import JOBS, QUEUE_SCHEDULED, AppJob, background_job


@background_job(queue=QUEUE_SCHEDULED, timeout=5, retry_intervals=(1, 2), domain_errors="result")
def lookup(item_id: int) -> dict:
    raise NotFound(f"item {item_id} does not exist")


@background_job()
def strict_lookup(item_id: int) -> dict:
    raise NotFound(f"item {item_id} does not exist")


def test_the_decorator_registers_each_job_with_its_policy():
    assert JOBS[f"{__name__}.lookup"] is lookup and JOBS[f"{__name__}.strict_lookup"] is strict_lookup
    assert lookup.queue_name == QUEUE_SCHEDULED
    assert (lookup.policy.timeout, lookup.policy.retry_intervals, lookup.policy.domain_errors) == (5, (1, 2), "result")


def test_a_domain_error_is_the_result_or_raises():
    assert lookup(7) == {"status": "error", "error": {"code": "not_found", "message": "item 7 does not exist",
                                                      "fields": {}}}
    with pytest.raises(NotFound):
        strict_lookup(7)


def test_an_unknown_domain_error_policy_is_refused():
    with pytest.raises(ValueError):
        background_job(domain_errors="ignore")


def test_a_job_without_a_bound_app_says_so():
    with pytest.raises(RuntimeError, match="no Flask app is bound"):
        AppJob(connection=Redis()).perform()  # never connects: it fails before running anything
