"""API: the caller's notifications and preferences; announcements (admin)."""
from __future__ import annotations

import logging

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..api import Blueprint, api_user, error_response, link
from ..apischemas import ID, IdField, Link, ListSchema, Out, PageSchema, Text, When
from ..errors import NotFound
from ..extensions import db
from . import center
from .models import NotificationPreference
from .preferences import SOURCE_API, PreferencesSchema, serialize_preferences, update_preferences
from .types import CHANNELS, CRITICAL_TYPES, TYPE_NAMES
from .announcements import new_announcement_id, unknown_user_ids
from .jobs import batch_send_notifications

log = logging.getLogger(__name__)

bp = Blueprint("notifications_api", __name__, description="Notifications, preferences, announcements")


class NotificationActionSchema(Schema):
    name = fields.String(metadata={"description": "run it: POST /notifications/{id}/actions/{name}"})
    label = fields.String(metadata={"description": "the button's text, e.g. Accept"})


class NotificationSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    title = fields.String()
    body = fields.String()
    url = fields.String(allow_none=True)
    is_read = fields.Boolean()
    created_at = Out()
    read_at = Out(allow_none=True)
    seen_at = Out(allow_none=True, metadata={"description": "when it was first shown (the badge counts unseen ones)"})
    archived_at = Out(allow_none=True, metadata={"description": "when it was put away (out of the default list)"})
    snoozed_until = Out(allow_none=True, metadata={
        "description": "hidden from lists and counts until then, when it comes back unread and unseen"})
    actions = fields.List(fields.Nested(NotificationActionSchema), attribute="available_actions", metadata={
        "description": "What the recipient can do about it here (invite_sent: accept, decline). Listed while "
                       "its subject is open (the invite pending and not expired); empty once it was answered "
                       "or expired, and for types without actions."})


class ActionResultSchema(Schema):
    status = fields.String(metadata={"description": "what the subject became, e.g. accepted, declined"})
    message = fields.String(metadata={"description": "what to tell the player, e.g. You joined Crimson Hawks"})


class ActionOutcomeSchema(Schema):
    notification = fields.Nested(NotificationSchema)
    result = fields.Nested(ActionResultSchema)


class NotificationPageSchema(PageSchema):
    items = fields.List(fields.Nested(NotificationSchema))


class NotificationListArgs(ListSchema):
    unread = fields.Boolean(load_default=None, metadata={"description": "true: only unread; false: only read"})
    type = fields.String(load_default=None, validate=validate.OneOf(TYPE_NAMES))
    archived = fields.Boolean(load_default=False, metadata={
        "description": "true: only archived ones; false (default): archived ones are left out"})
    snoozed = fields.Boolean(load_default=False, metadata={
        "description": "true: only the ones snoozed until later (hidden otherwise)"})


class CountSchema(Schema):
    count = fields.Integer(metadata={"description": "unread (archived and snoozed ones left out)"})
    unseen = fields.Integer(metadata={"description": "not yet shown: what the badge counts"})


class SeenSchema(Schema):
    ids = fields.List(IdField(), validate=validate.Length(min=1, max=center.MAX_SEEN_IDS), metadata={
        "description": "these notifications (others' ids and missing ones are passed over)"})
    up_to_id = IdField(metadata={"description": "every one of the caller's notifications with an id up to this"})

    @validates_schema
    def _one_of(self, data, **kwargs):
        if ("ids" in data) == ("up_to_id" in data):
            raise ValidationError("give ids or up_to_id (one of them)", field_name="ids")


class SnoozeSchema(Schema):
    until = When(required=True, metadata={"description": "3 minutes to 90 days from now"})


class UpdatedSchema(Schema):
    updated = fields.Integer()


class PreferencesOutSchema(Schema):
    critical = fields.List(fields.String(validate=validate.OneOf(TYPE_NAMES)), metadata={
        "description": "read-only: the types always delivered in-app (their channels always hold in_app)",
        "example": list(CRITICAL_TYPES)})
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String(validate=validate.OneOf(CHANNELS))))
    opt_out_email = fields.Boolean()
    opt_out_in_app = fields.Boolean()
    opt_out_discord = fields.Boolean()
    enable_daily_digest = fields.Boolean()
    digest_time = fields.String()
    timezone = fields.String()
    discord_webhook_url = fields.String(allow_none=True)
    quiet_hours = fields.Dict(allow_none=True, metadata={
        "description": "{start, end} as HH:MM in the user's zone (may span midnight), or null: off"})
    email_after_unseen_minutes = fields.Integer(metadata={"description": "0, 5, 15, 60 or 240"})


# The largest list whose request, at the longest ids and texts, still fits under the default
# request body limit (MAX_CONTENT_LENGTH, 1 MiB): a list the schema allows is never refused as 413.
MAX_ANNOUNCEMENT_RECIPIENTS = 80_000


class AnnouncementSchema(Schema):
    title = Text(300, required=True)
    body = Text(5000, min_length=0, load_default="")
    url = Link(allow_none=True, load_default=None)
    user_ids = fields.List(IdField(), allow_none=True, load_default=None, validate=validate.Length(min=1, max=MAX_ANNOUNCEMENT_RECIPIENTS),
                           metadata={"description": "recipients; all users when absent"})


class JobAcceptedSchema(Schema):
    job_id = fields.String()
    announcement_id = fields.String()


@bp.operation("GET", "/notifications", query=NotificationListArgs, response=NotificationPageSchema,
              links={"act": link("POST /notifications/{notification_id}/actions/{action_name}",
                                 "Answer the newest notification with its first action (e.g. accept an invite)",
                                 notification_id="items/0/id", action_name="items/0/actions/0/name")})
def list_notifications(args):
    """The caller's notifications, newest first."""
    items, next_cursor = center.center_page(api_user().id, args["unread"], args["type"], archived=args["archived"],
                                            snoozed=args["snoozed"], cursor=args["cursor"], limit=args["limit"])
    return {"items": center.attach_actions(items), "next_cursor": next_cursor}


@bp.operation("GET", "/notifications/unread-count", response=CountSchema)
def unread_count():
    """How many of the caller's notifications are unread (count) and not yet seen (unseen)."""
    return center.counts(api_user().id)


@bp.operation("POST", "/notifications/seen", body=SeenSchema, response=UpdatedSchema)
def mark_seen(data):
    """Mark the caller's notifications seen (shown to them): `ids`, or all up to `up_to_id`."""
    return {"updated": center.mark_seen(api_user().id, data.get("ids"), data.get("up_to_id"))}


@bp.operation("POST", f"/notifications/<{ID}:notification_id>/archive", response=NotificationSchema)
def archive(notification_id):
    """Put one of the caller's notifications away: out of the default list and the counts
    (listed with ?archived=true). Ends a snooze on it."""
    return center.attach_actions([center.archive(api_user().id, notification_id)])[0]


@bp.operation("POST", f"/notifications/<{ID}:notification_id>/unarchive", response=NotificationSchema)
def unarchive(notification_id):
    """Bring an archived notification back to the default list."""
    return center.attach_actions([center.unarchive(api_user().id, notification_id)])[0]


@bp.operation("POST", f"/notifications/<{ID}:notification_id>/snooze", body=SnoozeSchema,
              response=NotificationSchema)
def snooze(data, notification_id):
    """Hide a notification until `until` (3 minutes to 90 days ahead; else 422 naming `until`); it then
    comes back unread and unseen. Snoozing again moves the time."""
    return center.attach_actions([center.snooze(api_user().id, notification_id, data["until"])])[0]


@bp.operation("DELETE", f"/notifications/<{ID}:notification_id>/snooze", response=NotificationSchema)
def unsnooze(notification_id):
    """End a snooze now: the notification is back in the lists."""
    return center.attach_actions([center.unsnooze(api_user().id, notification_id)])[0]


@bp.operation("POST", f"/notifications/<{ID}:notification_id>/read", response=NotificationSchema)
def read_one(notification_id):
    """Mark one of the caller's notifications read."""
    return center.attach_actions([center.mark_read(api_user().id, notification_id)])[0]


@bp.operation("POST", f"/notifications/<{ID}:notification_id>/actions/<action_name>", response=ActionOutcomeSchema)
def run_action(notification_id, action_name):
    """Run one of the actions a notification lists (e.g. accept or decline an invite) and mark it read.

    The recipient only (anyone else: 404). 404 for an action its type does not have; 409 when the action
    no longer applies (the invite expired or was already answered), and nothing is changed."""
    notification, result = center.run_action(api_user(), notification_id, action_name)
    return {"notification": notification, "result": result}


@bp.operation("POST", "/notifications/read-all", response=UpdatedSchema)
def read_all():
    """Mark all the caller's notifications read."""
    return {"updated": center.mark_all_read(api_user().id)}


@bp.operation("GET", "/preferences", response=PreferencesOutSchema)
def get_preferences():
    """The caller's notification preferences."""
    user = api_user()
    pref = NotificationPreference.get_or_create_for_user(user)
    data = serialize_preferences(pref)
    db.session.rollback()  # reading never creates a row
    return data


@bp.operation("PUT", "/preferences", body=PreferencesSchema(partial=True), body_required=False,
              response=PreferencesOutSchema)
def put_preferences(data):
    """Change any subset of the caller's preferences (recorded with source "api")."""
    return serialize_preferences(update_preferences(api_user(), data, SOURCE_API))


@bp.operation("POST", "/announcements", body=AnnouncementSchema, status=202, response=JobAcceptedSchema, admin=True)
def announce(data):
    """Send an announcement to users (all when user_ids is absent), on the queue (admin)."""
    user_ids = data["user_ids"]
    if user_ids is not None:
        missing = unknown_user_ids(user_ids)
        if missing:
            raise NotFound(f"Unknown users: {missing[:20]}", fields={"user_ids": f"unknown ids {missing[:20]}"})
        user_ids = sorted(set(user_ids))
    announcement_id = new_announcement_id()
    try:
        job = batch_send_notifications.enqueue(user_ids, "announcement", data["title"], data["body"], data["url"],
                                               announcement_id)
    except Exception as exc:  # Redis down: say so, nothing was written
        log.error("announcement %s not queued: %s", announcement_id, exc)
        return error_response(503, "unavailable", "The job queue is unavailable; try again shortly.")
    return {"job_id": job.id, "announcement_id": announcement_id}
