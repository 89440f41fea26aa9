"""Users, login and API tokens."""


def init_app(app):
    from . import cli, views

    app.register_blueprint(views.bp)
    cli.init_app(app)
