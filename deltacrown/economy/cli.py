"""`flask distribute-payouts TOURNAMENT_ID [--enqueue]` and `flask check-wrapup [--enqueue]`: the
same services as the jobs."""
from __future__ import annotations

import click

from ..clitools import job_command, row_must_exist
from ..dbutil import MAX_DB_ID
from ..extensions import db
from ..tournaments.models import Tournament
from . import jobs
from .models import Payout
from .payouts import distribute_tournament_payouts
from .wrapup import check_tournament_wrapup

ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}


@job_command("distribute-payouts", jobs.distribute_payouts, check=row_must_exist(Tournament, "tournament_id"))
@click.argument("tournament_id", type=click.IntRange(min=1, max=MAX_DB_ID))  # beyond: no such id
def distribute_payouts_command(tournament_id):
    """Pay a completed tournament's placed teams (1st, 2nd, 3rd), exactly once.

    Safe to rerun: a tournament already paid is reported as such (exit 0). A payout at or
    above PAYOUT_APPROVAL_THRESHOLD is held for a second admin, never paid from here.
    """
    result = distribute_tournament_payouts(tournament_id)
    held = [p for p in result["payouts"] if p.get("status") == "pending_approval"]
    if result["status"] == "already_distributed":
        click.echo(f"Tournament {tournament_id}: payouts were already distributed; nothing paid now.")
    elif held:
        click.echo(f"Tournament {tournament_id}: paid {len(result['payouts']) - len(held)} placed team(s); "
                   f"{len(held)} payout(s) held for a second admin's approval.")
    else:
        click.echo(f"Tournament {tournament_id}: paid {len(result['payouts'])} placed team(s).")
    for payout in result["payouts"]:
        line = (f"  {ORDINALS.get(payout['place'], payout['place'])}  {payout['team_name']} "
                f"(team {payout['team_id']}): {payout['amount']} coins ")
        held_row = db.session.get(Payout, payout["payout_id"]) if payout.get("payout_id") else None
        if held_row is not None and held_row.status == "pending_approval":
            line += (f"held for approval (payout {held_row.id}, captain user {payout['user_id']}; "
                     f"POST /api/v1/payouts/{held_row.id}/approve)")
        elif held_row is not None:  # a rerun after the decision: say what it was
            line += (f"held, then {'approved and paid' if held_row.status == 'paid' else 'rejected'} "
                     f"(payout {held_row.id}) to captain (user {payout['user_id']})")
        else:
            line += f"to captain (user {payout['user_id']})"
        click.echo(line)


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
    app.cli.add_command(distribute_payouts_command)
    app.cli.add_command(check_wrapup_command)
