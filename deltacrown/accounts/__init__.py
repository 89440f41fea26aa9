"""Users, login and API tokens."""


def init_app(app):
    from ..api import register_blueprint
    from . import api, cli, views

    app.register_blueprint(views.bp)
    register_blueprint(app, api.bp)
    cli.init_app(app)
