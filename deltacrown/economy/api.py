"""API: a user's coin balance and history; payouts held for approval (admins)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..accounts.models import User
from ..api import Blueprint, api_user, link
from ..apischemas import ID, ListSchema, Out, PageSchema, Text
from ..dbutil import get_or_404
from ..errors import Forbidden
from . import approvals, services
from .models import PAYOUT_STATUSES

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


# --- payouts held for a second admin (economy/approvals.py) ------------------------

class PayoutSchema(Schema):
    id = fields.Integer()
    tournament_id = fields.Integer()
    team_id = fields.Integer()
    user_id = fields.Integer(metadata={"description": "the captain it is paid to"})
    place = fields.Integer()
    amount = fields.Integer()
    status = fields.String(metadata={"enum": list(PAYOUT_STATUSES)})
    threshold = fields.Integer(metadata={"description": "PAYOUT_APPROVAL_THRESHOLD when it was held"})
    created_at = Out()
    completed_by = fields.Integer(attribute="completed_by_id", allow_none=True,
                                  metadata={"description": "the admin who completed the tournament"})
    decided_by = fields.Integer(attribute="decided_by_id", allow_none=True)
    decided_at = Out(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "why it was rejected"})
    self_approved = fields.Boolean(metadata={"description": "approved by the admin who completed the tournament "
                                                           "(PAYOUT_APPROVAL_ALLOW_SELF)"})
    transaction_id = fields.Integer(allow_none=True, metadata={"description": "its coins, once paid"})


class PayoutListSchema(PageSchema):
    items = fields.List(fields.Nested(PayoutSchema))


class PayoutListArgs(ListSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(PAYOUT_STATUSES),
                           metadata={"description": "only payouts with this status"})


class RejectSchema(Schema):
    reason = Text(approvals.REASON_MAX_LENGTH, blank=False, required=True,
                  metadata={"description": "why; the team's captain is told"})


_DECIDE_LINKS = {"approve": link("POST /payouts/{payout_id}/approve", payout_id="items/0/id"),
                 "reject": link("POST /payouts/{payout_id}/reject", payout_id="items/0/id")}


@bp.operation("GET", "/payouts", query=PayoutListArgs, response=PayoutListSchema, admin=True, links=_DECIDE_LINKS)
def list_payouts(args):
    """Payouts held for approval (PAYOUT_APPROVAL_THRESHOLD) and their decisions, newest first (admin)."""
    items, next_cursor = approvals.list_payouts(args["status"], args["cursor"], args["limit"])
    return {"items": items, "next_cursor": next_cursor}


@bp.operation("POST", f"/payouts/<{ID}:payout_id>/approve", response=PayoutSchema, admin=True)
def approve_payout(payout_id):
    """Approve and pay a held payout, once (admin; not the one who completed the tournament: 403).
    409 when it was already decided."""
    return approvals.approve_payout(payout_id, api_user())


@bp.operation("POST", f"/payouts/<{ID}:payout_id>/reject", body=RejectSchema, response=PayoutSchema, admin=True)
def reject_payout(data, payout_id):
    """Reject a held payout with a reason (admin): no coins; the captain is told why. 409 when already decided."""
    return approvals.reject_payout(payout_id, api_user(), data["reason"])
