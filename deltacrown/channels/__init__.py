"""Delivery channels: email and Discord."""


def init_app(app):
    pass
