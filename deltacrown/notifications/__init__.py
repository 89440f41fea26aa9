"""Notifications: the type registry, preferences, the center, digests."""


def init_app(app):
    pass
