"""Every background job an admin can see or run, declared as data.

`RECURRING_JOBS` are registered with rq-scheduler under fixed ids at scheduler
start (reconciled: missing ones added, changed ones replaced, ids no longer
listed removed). `RUNNABLE_JOBS` are what `POST /api/v1/jobs/{name}/run`, the
dashboard's "run now" and the scheduler can start: each is a @background_job of
its part (which calls the part's service), with a description and a schedule.
Cron times are in SCHEDULER_TIMEZONE.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..economy import jobs as economy_jobs
from ..notifications import jobs as notification_jobs
from ..outbox import jobs as outbox_jobs
from ..teams import jobs as team_jobs
from ..tournaments import jobs as tournament_jobs
from ..dbutil import MAX_DB_ID


@dataclass(frozen=True)
class JobSpec:
    name: str  # stable: the API name and, as "recurring-<name>", the scheduler id
    func: str  # dotted path of the @background_job function
    description: str
    cron: str | None = None  # None: run on demand only
    args: tuple[str, ...] = field(default=())  # names of the arguments it takes

    @classmethod
    def of(cls, job, description: str, cron: str | None = None, name: str | None = None) -> JobSpec:
        """The spec of a @background_job: its path and arguments are the function's, its name too (with dashes)."""
        return cls(name or job.__name__.replace("_", "-"), f"{job.__module__}.{job.__qualname__}", description,
                   cron, tuple(inspect.signature(job).parameters))


RUNNABLE_JOBS: tuple[JobSpec, ...] = (
    JobSpec.of(tournament_jobs.recompute_rankings, "Recompute team points, wins, losses and ranks", "0 2 * * *"),
    JobSpec.of(notification_jobs.send_digests, "Send daily digests to users whose local digest time has come",
               "0 * * * *"),
    JobSpec.of(team_jobs.clean_expired_invites, "Expire team invites pending for more than 7 days", "0 */6 * * *"),
    JobSpec.of(team_jobs.expire_sponsors, "Expire approved sponsors past their end date", "0 3 * * *"),
    JobSpec.of(team_jobs.process_promotions, "Start scheduled promotions and end finished ones", "0 * * * *"),
    JobSpec.of(economy_jobs.check_tournament_wrapup, "Rank, pay and close completed tournaments not yet wrapped up",
               "15 * * * *"),
    JobSpec.of(outbox_jobs.sweep_outbox, "Relay outbox events that were not relayed after commit", "* * * * *",
               name="relay-outbox"),
    JobSpec.of(notification_jobs.sweep_match_reminders,
               "Send match reminders whose job was lost, re-add missing reminder jobs", "* * * * *",
               name="match-reminders"),
    JobSpec.of(notification_jobs.sweep_held_sends,
               "Re-create lost jobs of held sends (quiet hours, email delay) and of sends never tried; the "
               "database rows are the truth",
               "* * * * *"),
    JobSpec.of(notification_jobs.wake_snoozed_sweep,
               "Wake snoozed notifications whose time has come (if their own wake-up job was lost)", "* * * * *",
               name="wake-snoozed"),
    JobSpec.of(economy_jobs.distribute_payouts, "Pay a completed tournament's placed teams (exactly once)"),
    JobSpec.of(notification_jobs.cleanup_notifications, "Delete read notifications older than N days (90 by default)",
               "30 4 * * *"),
    JobSpec.of(notification_jobs.prune_records,
               "Delete finished deliveries, handled outbox events and digests older than RETENTION_DAYS", "45 4 * * *"),
)

# Upper bounds of the arguments: an id beyond MAX_DB_ID cannot exist; more days than this
# overflow the date arithmetic.
MAX_ARG_VALUES = {"tournament_id": MAX_DB_ID, "days": 36_500}

RECURRING_JOBS: tuple[JobSpec, ...] = tuple(j for j in RUNNABLE_JOBS if j.cron)
JOBS_BY_NAME = {j.name: j for j in RUNNABLE_JOBS}


def scheduler_job_id(spec: JobSpec) -> str:
    # rq 3 accepts only letters, digits, "_" and "-" in job ids (no ":").
    return f"recurring-{spec.name}"
