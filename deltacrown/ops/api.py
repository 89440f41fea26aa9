"""Jobs API (admin): list the jobs, run one now, follow a run."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..api import Blueprint
from ..dbutil import get_or_404
from ..errors import NotFound
from ..tournaments.models import Tournament
from . import runs, schedule

bp = Blueprint("jobs", __name__, description="Background jobs: schedule, run now, status (admin)")


class LastRunSchema(Schema):
    job_id = fields.String()
    status = fields.String(metadata={"description": "queued, started, finished, retrying or failed"})
    trigger = fields.String(metadata={"description": "schedule, api, dashboard, cli"})
    enqueued_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class JobSchema(Schema):
    name = fields.String()
    description = fields.String()
    schedule = fields.String(allow_none=True, metadata={"description": "cron, in the scheduler's time zone"})
    timezone = fields.String(allow_none=True)
    recurring = fields.Boolean()
    args = fields.List(fields.String())
    next_run_at = fields.String(allow_none=True)
    last_status = fields.String(allow_none=True)
    last_run = fields.Nested(LastRunSchema, allow_none=True)


class JobListSchema(Schema):
    items = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "always null: every job fits one page"})


class RunArgsSchema(Schema):
    tournament_id = fields.Integer(strict=True, allow_none=True,
                                   validate=validate.Range(min=1, max=schedule.MAX_ARG_VALUES["tournament_id"]),
                                   metadata={"description": "recompute-rankings (optional), distribute-payouts"})
    days = fields.Integer(strict=True, validate=validate.Range(min=1, max=schedule.MAX_ARG_VALUES["days"]),
                          metadata={"description": "cleanup-notifications: keep read ones younger than this"})


class JobIdSchema(Schema):
    job_id = fields.String()


class JobRunSchema(Schema):
    job_id = fields.String()
    name = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "queued, started, finished or failed"})
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)
    progress = fields.Raw(allow_none=True)
    enqueued_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)


@bp.operation("GET", "/jobs", response=JobListSchema, admin=True)
def list_jobs():
    """The jobs: name, schedule, next run and latest run's status."""
    return {"items": runs.list_jobs(), "next_cursor": None}  # the contract's list shape


# The names the path takes and the arguments each job takes, for the document.
_JOB_NAME = {"in": "path", "name": "name", "required": True,
             "schema": {"type": "string", "enum": [spec.name for spec in schedule.RUNNABLE_JOBS]},
             "description": "; ".join(f"{spec.name}: " + (", ".join(spec.args) if spec.args else "no arguments")
                                      for spec in schedule.RUNNABLE_JOBS)}


@bp.operation("POST", "/jobs/<string:name>/run",
              body=RunArgsSchema, body_required=False, status=202, response=JobIdSchema, admin=True)
@bp.doc(parameters=[_JOB_NAME])
def run_job(args, name):
    """Start a job now; 404 for an unknown name, 422 for arguments it does not take (the `name`
    parameter lists which each job takes)."""
    spec = schedule.JOBS_BY_NAME.get(name)
    if spec is None:
        raise NotFound(f"no job named {name!r}; known: {', '.join(sorted(schedule.JOBS_BY_NAME))}")
    args = runs.validate_job_args(spec, args)  # 422 before 404: wrong names are the first problem
    if args.get("tournament_id") is not None:
        get_or_404(Tournament, args["tournament_id"], "tournament")
    job = runs.start_job(name, args, trigger="api")
    return {"job_id": job.id}


@bp.operation("GET", "/jobs/runs/<string:job_id>", response=JobRunSchema, admin=True)
def job_run(job_id):
    """One run's status, result and error."""
    return runs.job_run(job_id)
