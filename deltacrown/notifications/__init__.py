"""Notifications: the type registry, preferences, the center, digests."""


def init_app(app):
    from . import cli as digest_cli  # scheduling part: digest and cleanup commands

    digest_cli.init_app(app)
