"""Tournaments: registrations, matches, placements, rankings."""


def init_app(app):
    from ..api import register_blueprint
    from . import api, cli

    register_blueprint(app, api.bp)
    cli.init_app(app)  # flask recompute-rankings
