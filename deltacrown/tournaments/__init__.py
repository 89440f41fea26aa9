"""Tournaments: registrations, matches, placements, rankings, wrap-up."""


def init_app(app):
    from . import cli

    cli.init_app(app)
