"""`flask recompute-rankings`: the same service as the job.

It runs in this process by default; `--enqueue` puts the job on the queue
for a worker and prints its id. Errors exit non-zero with one line.
"""
from __future__ import annotations

import click

from ..clitools import job_command, row_must_exist
from ..dbutil import MAX_DB_ID
from . import jobs
from .models import Tournament
from .rankings import announce_standings, recompute_team_rankings


@job_command("recompute-rankings", jobs.recompute_rankings, check=row_must_exist(Tournament, "tournament_id"))
@click.option("--tournament-id", type=click.IntRange(min=1, max=MAX_DB_ID), default=None,
              help="Only recompute the totals of this tournament's teams (ranks are always global).")
def recompute_rankings_command(tournament_id):
    """Recompute team points, wins, losses and ranks from completed matches."""
    result = recompute_team_rankings(tournament_id)
    announce_standings(result)
    scope = "all teams" if tournament_id is None else f"teams of tournament {tournament_id}"
    click.echo(f"Rankings recomputed ({scope}): {result['updated_count']} team(s) updated, "
               f"{result['moved_count']} moved in rank.")


def init_app(app):
    app.cli.add_command(recompute_rankings_command)
