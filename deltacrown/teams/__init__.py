"""Teams: rosters, invites, sponsors, promotions, achievements."""


def init_app(app):
    from . import cli as lifecycle_cli  # scheduling part: lifecycle commands

    lifecycle_cli.init_app(app)
