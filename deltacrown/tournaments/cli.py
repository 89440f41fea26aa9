"""`flask recompute-rankings`: the same service as the job.

It runs in this process by default; `--enqueue` puts the job on the queue
for a worker and prints its id. Errors exit non-zero with one line.
"""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..clitools import enqueue_and_report, enqueue_option
from ..dbutil import MAX_DB_ID
from ..errors import ServiceError
from ..extensions import db
from . import jobs
from .models import Tournament
from .rankings import recompute_team_rankings


@click.command("recompute-rankings")
@click.option("--tournament-id", type=click.IntRange(min=1, max=MAX_DB_ID), default=None,
              help="Only recompute the totals of this tournament's teams (ranks are always global).")
@enqueue_option
@with_appcontext
def recompute_rankings_command(tournament_id, enqueue):
    """Recompute team points, wins, losses and ranks from completed matches."""
    if enqueue:
        if tournament_id is not None and db.session.get(Tournament, tournament_id) is None:
            raise click.ClickException(f"tournament {tournament_id} does not exist")
        enqueue_and_report(jobs.recompute_rankings, tournament_id)
        return
    try:
        result = recompute_team_rankings(tournament_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    scope = "all teams" if tournament_id is None else f"teams of tournament {tournament_id}"
    click.echo(f"Rankings recomputed ({scope}): {result['updated_count']} team(s) updated, "
               f"{result['moved_count']} moved in rank.")


def init_app(app):
    app.cli.add_command(recompute_rankings_command)
