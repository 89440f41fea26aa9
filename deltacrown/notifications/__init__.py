"""Notifications: the type registry, preferences, the center, digests."""


def init_app(app):
    from ..api import register_blueprint
    from . import api

    register_blueprint(app, api.bp)
