"""Ops: the recurring-job schedule, the admin dashboard, health and metrics."""


def init_app(app):
    from . import health, metrics, views

    app.register_blueprint(views.bp)  # /ops (admins)
    app.register_blueprint(health.bp)  # /healthz (no login)
    app.register_blueprint(metrics.bp)  # /metrics (no login)
