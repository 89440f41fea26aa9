"""The transactional outbox: events written with the change, relayed to RQ after commit."""


def init_app(app):
    from . import cli, relay

    relay.install()
    cli.init_app(app)  # flask relay-outbox
