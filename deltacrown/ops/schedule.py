"""Every background job an admin can see or run, declared as data.

`RECURRING_JOBS` are registered with rq-scheduler under fixed ids at scheduler
start (reconciled: missing ones added, changed ones replaced, ids no longer
listed removed). `RUNNABLE_JOBS` are what `POST /api/v1/jobs/{name}/run`, the
dashboard's "run now" and the CLI can start; each names the function in the
job module of its part, which calls the part's service.
Cron times are in SCHEDULER_TIMEZONE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..dbutil import MAX_DB_ID


@dataclass(frozen=True)
class JobSpec:
    name: str  # stable: the API name and, as "recurring-<name>", the scheduler id
    func: str  # dotted path of the @background_job function
    description: str
    cron: str | None = None  # None: run on demand only
    args: tuple[str, ...] = field(default=())  # names of the arguments it takes


RUNNABLE_JOBS: tuple[JobSpec, ...] = (
    JobSpec("recompute-rankings", "deltacrown.tournaments.jobs.recompute_rankings",
            "Recompute team points, wins, losses and ranks", cron="0 2 * * *", args=("tournament_id",)),
    JobSpec("send-digests", "deltacrown.notifications.jobs.send_digests",
            "Send daily digests to users whose local digest time has come", cron="0 * * * *"),
    JobSpec("clean-expired-invites", "deltacrown.teams.jobs.clean_expired_invites",
            "Expire team invites pending for more than 7 days", cron="0 */6 * * *"),
    JobSpec("expire-sponsors", "deltacrown.teams.jobs.expire_sponsors",
            "Expire approved sponsors past their end date", cron="0 3 * * *"),
    JobSpec("process-promotions", "deltacrown.teams.jobs.process_promotions",
            "Start scheduled promotions and end finished ones", cron="0 * * * *"),
    JobSpec("check-tournament-wrapup", "deltacrown.economy.jobs.check_tournament_wrapup",
            "Rank, pay and close completed tournaments not yet wrapped up", cron="15 * * * *"),
    JobSpec("relay-outbox", "deltacrown.outbox.jobs.sweep_outbox",
            "Relay outbox events that were not relayed after commit", cron="* * * * *"),
    JobSpec("distribute-payouts", "deltacrown.economy.jobs.distribute_payouts",
            "Pay a completed tournament's placed teams (exactly once)", args=("tournament_id",)),
    JobSpec("cleanup-notifications", "deltacrown.notifications.jobs.cleanup_notifications",
            "Delete read notifications older than N days (90 by default)", cron="30 4 * * *", args=("days",)),
    JobSpec("prune-records", "deltacrown.notifications.jobs.prune_records",
            "Delete finished deliveries, handled outbox events and digests older than RETENTION_DAYS",
            cron="45 4 * * *", args=("days",)),
)

# Upper bounds of the arguments: an id beyond MAX_DB_ID cannot exist; more days than this
# overflow the date arithmetic.
MAX_ARG_VALUES = {"tournament_id": MAX_DB_ID, "days": 36_500}

RECURRING_JOBS: tuple[JobSpec, ...] = tuple(j for j in RUNNABLE_JOBS if j.cron)
JOBS_BY_NAME = {j.name: j for j in RUNNABLE_JOBS}


def scheduler_job_id(spec: JobSpec) -> str:
    # rq 3 accepts only letters, digits, "_" and "-" in job ids (no ":").
    return f"recurring-{spec.name}"
