"""The player's pages about teams, tournaments and invites (HTML with htmx; every action
also works as a plain form). One blueprint, `pages`, shared by the view modules."""
from flask import Blueprint

bp = Blueprint("pages", __name__)


def init_app(app):
    from . import views  # noqa: F401  (its routes join `bp`)

    app.register_blueprint(bp)
