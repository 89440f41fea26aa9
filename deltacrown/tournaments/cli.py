"""`flask recompute-rankings` and `flask check-wrapup`: the same services as the jobs.

Each runs in this process by default; `--enqueue` puts the job on the queue
for a worker and prints its id. Errors exit non-zero with one line.
"""
from __future__ import annotations

import click

from ..clitools import job_command, row_must_exist
from . import jobs
from .models import Tournament
from .rankings import recompute_team_rankings
from .wrapup import check_tournament_wrapup


@job_command("recompute-rankings", jobs.recompute_rankings, check=row_must_exist(Tournament, "tournament_id"))
@click.option("--tournament-id", type=click.IntRange(min=1, max=2**31 - 1), default=None,
              help="Only recompute the totals of this tournament's teams (ranks are always global).")
def recompute_rankings_command(tournament_id):
    """Recompute team points, wins, losses and ranks from completed matches."""
    result = recompute_team_rankings(tournament_id)
    scope = "all teams" if tournament_id is None else f"teams of tournament {tournament_id}"
    click.echo(f"Rankings recomputed ({scope}): {result['updated_count']} team(s) updated, "
               f"{result['moved_count']} moved in rank.")


@job_command("check-wrapup", jobs.check_tournament_wrapup)
def check_wrapup_command():
    """Rank, pay and close every completed tournament not wrapped up yet."""
    result = check_tournament_wrapup()
    wrapped = ", ".join(str(i) for i in result["wrapped_up"]) or "none"
    click.echo(f"Checked {result['checked']} completed tournament(s) awaiting wrap-up; wrapped up: {wrapped}.")
    for failure in result["failed"]:
        click.echo(f"  tournament {failure['tournament_id']}: {failure['error']}", err=True)
    if result["failed"]:
        raise click.ClickException(f"{len(result['failed'])} tournament(s) could not be wrapped up")


def init_app(app):
    app.cli.add_command(recompute_rankings_command)
    app.cli.add_command(check_wrapup_command)
