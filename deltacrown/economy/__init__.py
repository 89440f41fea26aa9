"""Economy: coins, payouts and the dedup keys that make one-time work one-time."""


def init_app(app):
    from . import cli

    cli.init_app(app)
