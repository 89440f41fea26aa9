"""What an admin can do from the ops dashboard: requeue or delete failed jobs,
all through RQ's own APIs. ("Run now" is `ops.runs.start_job`.)

Each raises a ServiceError (NotFound, Conflict, ...) with a message a person can
act on, before changing anything.
"""
from __future__ import annotations

from dataclasses import dataclass

from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from ..errors import Conflict, NotFound
from ..queue import QUEUE_NAMES, AppJob


def _failed_registry(connection, queue_name: str) -> FailedJobRegistry:
    return FailedJobRegistry(queue_name, connection=connection, job_class=AppJob, serializer=JSONSerializer)


def _fetch(connection, job_id: str) -> AppJob:
    try:
        return AppJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        # Its data expired (failure TTL) or someone deleted it: drop any stale entry.
        for name in QUEUE_NAMES:
            _failed_registry(connection, name).remove(job_id)
        raise NotFound(f"Job {job_id} no longer exists (it expired or was deleted).") from None


def requeue_failed(connection, job_id: str) -> AppJob:
    job = _fetch(connection, job_id)
    try:
        return _failed_registry(connection, job.origin).requeue(job)
    except InvalidJobOperation:
        raise Conflict(f"Job {job_id} is not among the failed jobs any more (already requeued?).") from None


def delete_failed(connection, job_id: str) -> None:
    job = _fetch(connection, job_id)
    if job not in _failed_registry(connection, job.origin):
        raise Conflict(f"Job {job_id} is not among the failed jobs (only failed jobs can be deleted here).")
    job.delete()


@dataclass
class RequeueAllResult:
    requeued: int = 0
    missing: int = 0


def requeue_all_failed(connection) -> RequeueAllResult:
    outcome = RequeueAllResult()
    for name in QUEUE_NAMES:
        registry = _failed_registry(connection, name)
        for job_id in registry.get_job_ids():
            try:
                registry.requeue(job_id)
                outcome.requeued += 1
            except (NoSuchJobError, InvalidJobOperation):
                registry.remove(job_id)
                outcome.missing += 1
    return outcome
