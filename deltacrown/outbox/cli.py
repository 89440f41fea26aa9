"""`flask relay-outbox`: the every-minute sweep, runnable from cron or by hand."""
from __future__ import annotations

import click

from ..clitools import job_command
from . import jobs
from .relay import sweep_outbox_now


@job_command("relay-outbox", jobs.sweep_outbox)
@click.option("--min-age", type=click.IntRange(min=0), default=None,
              help="Only events unrelayed for at least this many seconds (default OUTBOX_SWEEP_AGE_SECONDS).")
def relay_outbox_command(min_age):
    """Relay outbox events that were not relayed after their commit (e.g. Redis was down)."""
    result = sweep_outbox_now(min_age)
    click.echo(f"Relayed {result['relayed']} event(s).")


def init_app(app):
    app.cli.add_command(relay_outbox_command)
