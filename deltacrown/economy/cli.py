"""`flask distribute-payouts TOURNAMENT_ID [--enqueue]` and `flask check-wrapup [--enqueue]`: the
same services as the jobs."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..clitools import enqueue_and_report, enqueue_option
from ..dbutil import MAX_DB_ID
from ..errors import ServiceError
from ..extensions import db
from ..tournaments.models import Tournament
from . import jobs
from .payouts import distribute_tournament_payouts
from .wrapup import check_tournament_wrapup

ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}


@click.command("distribute-payouts")
@click.argument("tournament_id", type=click.IntRange(min=1, max=MAX_DB_ID))  # beyond: no such id
@enqueue_option
@with_appcontext
def distribute_payouts_command(tournament_id, enqueue):
    """Pay a completed tournament's placed teams (1st, 2nd, 3rd), exactly once.

    Safe to rerun: a tournament already paid is reported as such (exit 0).
    """
    if enqueue:
        if db.session.get(Tournament, tournament_id) is None:
            raise click.ClickException(f"tournament {tournament_id} does not exist")
        enqueue_and_report(jobs.distribute_payouts, tournament_id)
        return
    try:
        result = distribute_tournament_payouts(tournament_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    if result["status"] == "already_distributed":
        click.echo(f"Tournament {tournament_id}: payouts were already distributed; nothing paid now.")
    else:
        click.echo(f"Tournament {tournament_id}: paid {len(result['payouts'])} placed team(s).")
    for payout in result["payouts"]:
        click.echo(f"  {ORDINALS.get(payout['place'], payout['place'])}  {payout['team_name']} "
                   f"(team {payout['team_id']}): {payout['amount']} coins to captain (user {payout['user_id']})")


@click.command("check-wrapup")
@enqueue_option
@with_appcontext
def check_wrapup_command(enqueue):
    """Rank, pay and close every completed tournament not wrapped up yet."""
    if enqueue:
        enqueue_and_report(jobs.check_tournament_wrapup)
        return
    result = check_tournament_wrapup()
    wrapped = ", ".join(str(i) for i in result["wrapped_up"]) or "none"
    click.echo(f"Checked {result['checked']} completed tournament(s) awaiting wrap-up; wrapped up: {wrapped}.")
    for failure in result["failed"]:
        click.echo(f"  tournament {failure['tournament_id']}: {failure['error']}", err=True)
    if result["failed"]:
        raise click.ClickException(f"{len(result['failed'])} tournament(s) could not be wrapped up")


def init_app(app):
    app.cli.add_command(distribute_payouts_command)
    app.cli.add_command(check_wrapup_command)
