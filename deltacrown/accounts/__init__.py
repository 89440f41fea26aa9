"""Users, login and API tokens."""


def init_app(app):
    from ..api import register_blueprint, set_token_authenticator
    from . import api, cli, views
    from .services import authenticate_token

    set_token_authenticator(app, authenticate_token)
    app.register_blueprint(views.bp)
    register_blueprint(app, api.bp)
    cli.init_app(app)
