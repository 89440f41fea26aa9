"""Tournaments: registrations, matches, placements, rankings, wrap-up."""


def init_app(app):
    pass
