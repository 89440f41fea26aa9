"""`flask process-bounces PATH`: read bounces and complaints from a mailbox (see bounces.py)."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from .bounces import process_path


@click.command("process-bounces")
@click.argument("path", type=click.Path(exists=True, dir_okay=True, file_okay=True))
@click.option("--remove", is_flag=True, help="Delete each message once processed (Maildir and .eml files).")
@with_appcontext
def process_bounces_command(path, remove):
    """Apply the bounces (RFC 3464) and complaints (RFC 5965 ARF) in PATH: a Maildir, an mbox,
    an .eml file or a directory of .eml files. Safe to run again over the same messages."""
    counts = process_path(path, remove=remove)
    click.echo(f"Read {counts['messages']} message(s): {counts['recorded']} bounce(s)/complaint(s) recorded, "
               f"{counts['duplicates']} already recorded, {counts['unmatched']} about no email or user of ours, "
               f"{counts['not_reports']} not a bounce or complaint report.")


def init_app(app):
    app.cli.add_command(process_bounces_command)
