"""`flask send-digests`, `flask cleanup-notifications`, `flask prune-records`, `flask match-reminders`,
`flask wake-snoozed`, `flask sweep-held-sends`: the same services as the jobs."""
from __future__ import annotations

import click

from ..clitools import job_command, run_with_progress
from . import center, jobs, service
from .digests import cleanup_old_notifications, send_daily_digest
from .reminders import sweep_reminders
from .retention import prune_records


@job_command("send-digests", jobs.send_digests)
def send_digests_command():
    """Send the daily digest to every user whose local digest time has come (once per local day)."""
    result = run_with_progress("Users", send_daily_digest)
    click.echo(f"Digests: {result['sent']} sent, {result['skipped']} skipped (nothing unread), "
               f"{result['already_sent']} already sent, {result['not_due']} not due yet, "
               f"{result['failed']} failed.")
    if result["failed"]:
        raise click.ClickException(f"{result['failed']} digest(s) could not be sent; they are retried later.")


@job_command("cleanup-notifications", jobs.cleanup_notifications)
@click.option("--days", type=click.IntRange(min=1, max=36_500), default=90, show_default=True,
              help="Keep read notifications younger than this many days.")
def cleanup_notifications_command(days):
    """Delete read notifications older than --days days; unread ones are kept."""
    result = run_with_progress("Deleted", cleanup_old_notifications, days)
    click.echo(f"Deleted {result['deleted']} read notification(s) older than {days} days.")


@job_command("prune-records", jobs.prune_records)
@click.option("--days", type=click.IntRange(min=1, max=36_500), default=None,
              help="Keep records younger than this many days (default RETENTION_DAYS).")
def prune_records_command(days):
    """Delete finished deliveries, handled outbox events and digests older than --days days."""
    result = run_with_progress("Deleted", prune_records, days)
    click.echo(f"Deleted {result['deliveries']} finished deliveries, {result['outbox_events']} handled outbox "
               f"event(s) and {result['digests']} digest(s) older than {result['days']} days.")


@job_command("match-reminders", jobs.sweep_match_reminders)
def match_reminders_command():
    """Send match reminders whose job was lost and re-add missing reminder jobs (safe any time)."""
    result = sweep_reminders()
    click.echo(f"Match reminders: {result['sent']} sent late by the sweep, {result['planned']} planned, "
               f"{result['rescheduled']} job(s) re-added.")


@job_command("wake-snoozed", jobs.wake_snoozed_sweep)
def wake_snoozed_command():
    """Wake snoozed notifications whose time has come; schedule again wake-ups Redis lost."""
    result = center.sweep_snoozes()
    click.echo(f"Snoozes: {result['woken']} woken, {result['rescheduled']} wake-up job(s) scheduled again.")


@job_command("sweep-held-sends", jobs.sweep_held_sends)
def sweep_held_sends_command():
    """Re-create the jobs Redis lost: held sends (quiet hours, email delay), first sends, retries (safe any time)."""
    result = service.sweep_unsent()
    click.echo(f"Held sends: {result['held']} (user, time) pair(s) waiting, {result['rescheduled']} job(s) re-created.")
    if result.get("waiting"):
        click.echo(f"Sends never tried or overdue for a retry: not looked for now, {result['waiting']} "
                   "(they may be theirs).")
    else:
        click.echo(f"Sends never tried after {service.LOST_SEND_AGE}: {result['lost_sends']}, "
                   f"{result['resent']} enqueued again; overdue retries enqueued again: {result['retries_resent']}.")


def init_app(app):
    app.cli.add_command(send_digests_command)
    app.cli.add_command(cleanup_notifications_command)
    app.cli.add_command(prune_records_command)
    app.cli.add_command(match_reminders_command)
    app.cli.add_command(wake_snoozed_command)
    app.cli.add_command(sweep_held_sends_command)
