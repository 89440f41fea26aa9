"""The transactional outbox: events written with the change, relayed to RQ after commit."""


def init_app(app):
    from . import relay

    relay.install()
