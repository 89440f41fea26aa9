"""The player's pages about teams, tournaments and invites, where notification links land
(HTML with htmx; every action also works as a plain form). One blueprint, `pages`, shared
by the view modules."""
from flask import Blueprint

bp = Blueprint("pages", __name__)


def init_app(app):
    from . import teams, tournaments  # noqa: F401  (their routes join `bp`)

    app.register_blueprint(bp)
