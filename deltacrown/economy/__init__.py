"""Economy: coins and payouts."""


def init_app(app):
    from ..api import register_blueprint
    from . import api, cli

    register_blueprint(app, api.bp)  # GET /users/{id}/coins, /payouts (approval)
    cli.init_app(app)  # flask distribute-payouts, check-wrapup
