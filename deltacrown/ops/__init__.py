"""Ops: the recurring-job schedule, the admin dashboard, health and metrics."""


def init_app(app):
    from ..api import register_blueprint
    from . import api as jobs_api  # scheduling part: the jobs API
    from . import demo

    register_blueprint(app, jobs_api.bp)
    demo.init_app(app)  # flask seed-demo
