"""Ops: the recurring-job schedule, the admin dashboard, health and metrics."""


def init_app(app):
    from .demo import init_app as init_demo; init_demo(app)  # noqa: E702  (one line per feature)
