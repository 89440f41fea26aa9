"""`flask create-user`, `flask rotate-token`, `flask set-password`."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..errors import ServiceError
from .services import create_user, find_user, rotate_api_token, set_password


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


def _user_named(username):
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return user


@click.command("rotate-token")
@click.argument("username")
@with_appcontext
def rotate_token_command(username):
    """Give a user a new API token and print it (shown only this once); the old one stops working."""
    user = _user_named(username)
    token = rotate_api_token(user)
    click.echo(f"The old API token of {user.username} no longer works; their browser sessions were ended.")
    click.echo(f"New API token (shown once, store it now): {token}")


@click.command("set-password")
@click.argument("username")
@click.password_option("--password", help="The new password (asked for when omitted).")
@with_appcontext
def set_password_command(username, password):
    """Set a user's login password; their browser sessions end."""
    user = _user_named(username)
    try:
        set_password(user, password)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Password of {user.username} changed; their browser sessions were ended.")


def init_app(app):
    app.cli.add_command(create_user_command)
    app.cli.add_command(rotate_token_command)
    app.cli.add_command(set_password_command)
