"""`flask create-user`."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..errors import ServiceError
from .services import create_user


@click.command("create-user")
@click.argument("username")
@click.option("--email", required=True, help="The user's email address.")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--password", help="Login password (generated and printed when omitted).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin.")
@with_appcontext
def create_user_command(username, email, admin, password, timezone):
    """Create a user and print its API token (shown only this once)."""
    try:
        user, token, used_password = create_user(username, email, password=password, is_admin=admin,
                                                 timezone=timezone)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Created {'admin' if user.is_admin else 'user'} {user.username} (id {user.id}).")
    if password is None:
        click.echo(f"Password: {used_password}")
    click.echo(f"API token (shown once, store it now): {token}")


def init_app(app):
    app.cli.add_command(create_user_command)
