"""`flask clean-expired-invites`, `flask process-sponsorships`: the same services as the jobs."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..clitools import enqueue_and_report, enqueue_option
from ..errors import ServiceError
from . import jobs, lifecycle


@click.command("clean-expired-invites")
@enqueue_option
@with_appcontext
def clean_expired_invites_command(enqueue):
    """Expire team invites pending for more than INVITE_EXPIRY_DAYS days."""
    if enqueue:
        return enqueue_and_report(jobs.clean_expired_invites)
    try:
        result = lifecycle.clean_expired_invites()
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Expired {result['expired']} invite(s).")


@click.command("process-sponsorships")
@click.option("--sponsors-only", is_flag=True, help="Only expire sponsors past their end date.")
@click.option("--promotions-only", is_flag=True, help="Only start and end promotions.")
@enqueue_option
@with_appcontext
def process_sponsorships_command(sponsors_only, promotions_only, enqueue):
    """Expire sponsors past their end date; start and end scheduled promotions."""
    if sponsors_only and promotions_only:
        raise click.UsageError("--sponsors-only and --promotions-only exclude each other.")
    do_sponsors, do_promotions = not promotions_only, not sponsors_only
    if enqueue:
        if do_sponsors:
            enqueue_and_report(jobs.expire_sponsors)
        if do_promotions:
            enqueue_and_report(jobs.process_promotions)
        return
    try:
        if do_sponsors:
            result = lifecycle.expire_sponsors()
            click.echo(f"Sponsors: {result['expired']} expired.")
        if do_promotions:
            result = lifecycle.process_scheduled_promotions()
            click.echo(f"Promotions: {result['started']} started, {result['expired']} expired.")
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None


def init_app(app):
    app.cli.add_command(clean_expired_invites_command)
    app.cli.add_command(process_sponsorships_command)
