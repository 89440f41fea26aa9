"""The player's pages about teams, tournaments and invites: where notification links land."""
from flask import Blueprint

bp = Blueprint("pages", __name__)


def init_app(app):
    from . import tournaments  # noqa: F401  (its routes join `bp`)

    app.register_blueprint(bp)
