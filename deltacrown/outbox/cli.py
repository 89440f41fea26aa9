"""`flask relay-outbox`: the every-minute sweep, runnable from cron or by hand."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..clitools import enqueue_and_report, enqueue_option
from . import jobs
from .relay import sweep_outbox_now


@click.command("relay-outbox")
@click.option("--min-age", type=click.IntRange(min=0), default=None,
              help="Only events unrelayed for at least this many seconds (default OUTBOX_SWEEP_AGE_SECONDS).")
@enqueue_option
@with_appcontext
def relay_outbox_command(min_age, enqueue):
    """Relay outbox events that were not relayed after their commit (e.g. Redis was down)."""
    if enqueue:
        return enqueue_and_report(jobs.sweep_outbox)
    result = sweep_outbox_now(min_age)
    click.echo(f"Relayed {result['relayed']} event(s).")


def init_app(app):
    app.cli.add_command(relay_outbox_command)
