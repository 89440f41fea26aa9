"""Teams: rosters, invites, sponsors, promotions, achievements."""


def init_app(app):
    from ..api import register_blueprint
    from . import api

    register_blueprint(app, api.bp)
