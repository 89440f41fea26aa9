"""`flask clean-expired-invites`, `flask process-sponsorships`: the same services as the jobs."""
from __future__ import annotations

import click

from ..clitools import job_command
from . import jobs, lifecycle


@job_command("clean-expired-invites", jobs.clean_expired_invites)
def clean_expired_invites_command():
    """Expire team invites pending for more than INVITE_EXPIRY_DAYS days."""
    result = lifecycle.clean_expired_invites()
    click.echo(f"Expired {result['expired']} invite(s).")


def only_one_kind(sponsors_only, promotions_only):
    if sponsors_only and promotions_only:
        raise click.UsageError("--sponsors-only and --promotions-only exclude each other.")


def chosen_jobs(sponsors_only, promotions_only):
    return ([] if promotions_only else [jobs.expire_sponsors]) + ([] if sponsors_only else [jobs.process_promotions])


@job_command("process-sponsorships", jobs.expire_sponsors, jobs.process_promotions, check=only_one_kind,
             select=chosen_jobs)
@click.option("--sponsors-only", is_flag=True, help="Only expire sponsors past their end date.")
@click.option("--promotions-only", is_flag=True, help="Only start and end promotions.")
def process_sponsorships_command(sponsors_only, promotions_only):
    """Expire sponsors past their end date; start and end scheduled promotions."""
    if not promotions_only:
        result = lifecycle.expire_sponsors()
        click.echo(f"Sponsors: {result['expired']} expired.")
    if not sponsors_only:
        result = lifecycle.process_scheduled_promotions()
        click.echo(f"Promotions: {result['started']} started, {result['expired']} expired.")


def init_app(app):
    app.cli.add_command(clean_expired_invites_command)
    app.cli.add_command(process_sponsorships_command)
