"""Teams: rosters, invites, sponsors, promotions, achievements."""


def init_app(app):
    pass
