"""API: bounce and complaint events from a mail provider (Bearer EMAIL_EVENTS_TOKEN), and the
suppression list (admin)."""
from __future__ import annotations

import hashlib
import hmac

from flask import current_app, request
from marshmallow import Schema, fields, validate

from ..accounts.api import EMAIL_DOMAIN_PATTERN
from ..api import ApiBlueprint, API_PREFIX, Blueprint, Unauthorized, api_user, keyset_page, register_blueprint
from ..apischemas import ID, IdField, ListSchema, Out, PageSchema, Text
from ..errors import InvalidInput
from ..timeutil import utcnow
from . import bounces, suppression
from .models import SUPPRESSION_REASONS, EmailSuppression

MAX_RAW_MESSAGE_BYTES = 1024 * 1024
EVENTS_SECURITY = "emailEventsToken"

# Not the user-token Blueprint: a provider calls this with EMAIL_EVENTS_TOKEN, not a user's token.
events_bp = ApiBlueprint("email_events_api", __name__, url_prefix=API_PREFIX,
                         description="Bounces and complaints reported by a mail provider")
bp = Blueprint("suppressions_api", __name__, description="The email suppression list (admin)")


@events_bp.before_request
def _events_token():
    token = current_app.config.get("EMAIL_EVENTS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Digests of equal length, compared in constant time (neither content nor length leaks).
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(
            hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest()):
        raise Unauthorized("Send 'Authorization: Bearer <EMAIL_EVENTS_TOKEN>' (unset: this endpoint is off).")


class EmailEventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf([suppression.BOUNCE, suppression.COMPLAINT]))
    email = fields.String(required=True, validate=[validate.Length(min=3, max=254),
                                                   validate.Email(error="not a valid email address")],
                          metadata={"format": "email", "pattern": EMAIL_DOMAIN_PATTERN})
    permanent = fields.Boolean(load_default=True, metadata={
        "description": "bounce: true for a hard bounce (suppressed at once), false for a soft one (three "
                       "within 7 days suppress for 7 days); ignored for a complaint"})
    delivery_id = IdField(allow_none=True, load_default=None, metadata={
        "description": "the delivery the event is about, when the provider knows it"})


class EmailEventResultSchema(Schema):
    matched = fields.Boolean(metadata={"description": "the event concerns an email or a user of ours; false: "
                                                      "nothing was recorded"})


class SuppressionSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    reason = fields.String(metadata={"enum": list(SUPPRESSION_REASONS)})
    code = fields.String(allow_none=True, metadata={"description": "the SMTP reply or DSN status, e.g. 550, 5.1.1"})
    created_at = Out()
    until = Out(allow_none=True, metadata={"description": "null: until lifted"})


class SuppressionQuerySchema(ListSchema):
    email = Text(254, load_default=None, metadata={"description": "part of the address, any case"})


class SuppressionPageSchema(PageSchema):
    items = fields.List(fields.Nested(SuppressionSchema))


@events_bp.operation("POST", "/email-events", body=EmailEventSchema, status=202,
                     response=EmailEventResultSchema, raw_body=("message/rfc822", MAX_RAW_MESSAGE_BYTES))
@events_bp.doc(security=[{EVENTS_SECURITY: []}])
def email_event(data, raw=None):
    """A bounce or complaint reported by a mail provider.

    Either the raw report (Content-Type: message/rfc822): an RFC 3464 delivery status notification
    or an RFC 5965 (ARF) complaint; or a JSON event. The same event twice changes nothing."""
    if raw is not None:
        if not bounces.is_report(raw):
            raise InvalidInput("The message is not a bounce or complaint report: expected multipart/report with "
                               "report-type delivery-status (RFC 3464) or feedback-report (RFC 5965).",
                               fields={"body": "not an RFC 3464 or RFC 5965 report"})
        return {"matched": bounces.process_message(raw, source=None)["matched"]}
    return {"matched": bounces.process_json_event(data, today=utcnow().date().isoformat())["matched"]}


@bp.operation("GET", "/suppressions", query=SuppressionQuerySchema, response=SuppressionPageSchema, admin=True)
def list_suppressions(args):
    """Addresses that get no email now (newest first, cursor paged), optionally searched by address."""
    items, next_cursor = keyset_page(suppression.suppressions_query(args["email"]), EmailSuppression.id,
                                     args["cursor"], args["limit"])
    return {"items": items, "next_cursor": next_cursor}


@bp.operation("DELETE", f"/suppressions/<{ID}:suppression_id>", status=204, admin=True)
def lift_suppression(suppression_id):
    """Lift a suppression: the address gets email again (the row stays as history)."""
    suppression.lift(suppression_id, f"admin:{api_user().id}")
    return None


def init_app(app):
    register_blueprint(app, events_bp)
    register_blueprint(app, bp)
    spec = app.extensions["deltacrown_api"].spec
    if EVENTS_SECURITY not in spec.components.security_schemes:
        spec.components.security_scheme(EVENTS_SECURITY, {
            "type": "http", "scheme": "bearer", "description": "EMAIL_EVENTS_TOKEN"})
