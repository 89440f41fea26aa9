"""`flask send-digests`, `flask cleanup-notifications`, `flask prune-records`: the same services as the jobs."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..clitools import enqueue_and_report, enqueue_option
from ..errors import ServiceError
from . import jobs


class ProgressBar:
    """A click progress bar fed by a service's on_progress(done, total) callback."""

    def __init__(self, label: str):
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, done, total):
        if total is None:  # unknown length: a running count on stderr
            click.echo(f"\r{self.label}: {done}", nl=False, err=True)
            self.done = done
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is None and self.done:
            click.echo("", err=True)
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def run_with_progress(label: str, service, *args):
    """Run `service(*args, on_progress=...)` here with a progress bar; a ServiceError exits 1 with its message."""
    progress = ProgressBar(label)
    try:
        return service(*args, on_progress=progress)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        progress.close()


@click.command("send-digests")
@enqueue_option
@with_appcontext
def send_digests_command(enqueue):
    """Send the daily digest to every user whose local digest time has come (once per local day)."""
    if enqueue:
        return enqueue_and_report(jobs.send_digests)
    from .digests import send_daily_digest

    result = run_with_progress("Users", send_daily_digest)
    click.echo(f"Digests: {result['sent']} sent, {result['skipped']} skipped (nothing unread), "
               f"{result['already_sent']} already sent, {result['not_due']} not due yet, "
               f"{result['failed']} failed.")
    if result["failed"]:
        raise click.ClickException(f"{result['failed']} digest(s) could not be sent; they are retried later.")


@click.command("cleanup-notifications")
@click.option("--days", type=click.IntRange(min=1, max=36_500), default=90, show_default=True,
              help="Keep read notifications younger than this many days.")
@enqueue_option
@with_appcontext
def cleanup_notifications_command(days, enqueue):
    """Delete read notifications older than --days days; unread ones are kept."""
    if enqueue:
        return enqueue_and_report(jobs.cleanup_notifications, days)
    from .digests import cleanup_old_notifications

    result = run_with_progress("Deleted", cleanup_old_notifications, days)
    click.echo(f"Deleted {result['deleted']} read notification(s) older than {days} days.")


@click.command("prune-records")
@click.option("--days", type=click.IntRange(min=1, max=36_500), default=None,
              help="Keep records younger than this many days (default RETENTION_DAYS).")
@enqueue_option
@with_appcontext
def prune_records_command(days, enqueue):
    """Delete finished deliveries, handled outbox events and digests older than --days days."""
    if enqueue:
        return enqueue_and_report(jobs.prune_records, days)
    from .retention import prune_records

    result = run_with_progress("Deleted", prune_records, days)
    click.echo(f"Deleted {result['deliveries']} finished deliveries, {result['outbox_events']} handled outbox "
               f"event(s) and {result['digests']} digest(s) older than {result['days']} days.")


def init_app(app):
    app.cli.add_command(send_digests_command)
    app.cli.add_command(cleanup_notifications_command)
    app.cli.add_command(prune_records_command)
