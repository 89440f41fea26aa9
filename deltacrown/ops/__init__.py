"""Ops: the recurring-job schedule, the admin dashboard, health and metrics."""


def init_app(app):
    from . import demo

    demo.init_app(app)
