"""Notifications: the type registry, preferences, the center, digests."""


def init_app(app):
    from . import cli as digest_cli  # scheduling part: digest and cleanup commands

    digest_cli.init_app(app)

    # Player pages: the notification center (+ nav badge) and the preference editor.
    from . import settings_views, views

    views.init_app(app)
    settings_views.init_app(app)
