"""Tournaments: registrations, matches, placements, rankings, wrap-up."""


def init_app(app):
    from ..api import register_blueprint
    from . import api

    register_blueprint(app, api.bp)
