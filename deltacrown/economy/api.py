"""API: a user's coin balance and history."""
from __future__ import annotations

from marshmallow import Schema, fields

from ..accounts.models import User
from ..api import Blueprint, api_user
from ..apischemas import ID, ListSchema, Out, PageSchema
from ..dbutil import get_or_404
from ..errors import Forbidden
from . import services

bp = Blueprint("economy_api", __name__, description="Coins")


class CoinTransactionSchema(Schema):
    id = fields.Integer()
    amount = fields.Integer()
    transaction_type = fields.String()
    metadata = fields.Dict(attribute="meta")
    created_at = Out()


class CoinsSchema(PageSchema):
    balance = fields.Integer()
    items = fields.List(fields.Nested(CoinTransactionSchema))


@bp.operation("GET", f"/users/<{ID}:user_id>/coins", query=ListSchema, response=CoinsSchema)
def coins(args, user_id):
    """Balance and transactions, newest first (that user, or an admin)."""
    caller = api_user()
    if not caller.is_admin and caller.id != user_id:
        raise Forbidden("You can only see your own coins.")
    user = get_or_404(User, user_id, "User")
    items, next_cursor = services.history_page(user.id, args["cursor"], args["limit"])
    return {"balance": services.balance(user.id), "items": items, "next_cursor": next_cursor}
