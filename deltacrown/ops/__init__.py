"""Ops: the recurring-job schedule, the admin dashboard, health and metrics."""


def init_app(app):
    from ..api import register_blueprint
    from ..queue import record_runs_with
    from . import api as jobs_api  # the jobs API
    from . import demo, health, jobs, mail_views, metrics, stats, views  # noqa: F401  (jobs: the diagnostic ping job)

    record_runs_with(stats.record_job_run)  # every job run counts on the dashboard and /metrics
    register_blueprint(app, jobs_api.bp)
    demo.init_app(app)  # flask seed-demo
    app.register_blueprint(views.bp)  # /ops (admins)
    app.register_blueprint(health.bp)  # /healthz (no login)
    app.register_blueprint(metrics.bp)  # /metrics (no login)
