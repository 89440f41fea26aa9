"""What one outgoing message says, whichever channel carries it.

A Delivery points either at a Notification (a player's own email or webhook)
or carries a payload (team and platform webhook posts are per event); both are
turned into a `ChannelMessage` here, so the emails and the Discord post read one
shape. The type registry supplies the icon, colour and label around the text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app

from ..channels.discord import Embed
from ..links import site_path
from ..timeutil import utcnow
from .types import NOTIFICATION_TYPES, NotificationType, get_type

NOTIFICATION_CENTER_PATH = "/notifications"


def absolute_url(url: str | None) -> str:
    """A link back to the site: its path under PUBLIC_BASE_URL; anything that is not a
    same-site path (another host, javascript:, a path a browser reads as another host)
    becomes the notification center."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return base + (site_path(url, base) or NOTIFICATION_CENTER_PATH)


@dataclass(frozen=True)
class ChannelMessage:
    type: str
    title: str
    body: str = ""
    url: str | None = None
    created_at: datetime | None = None
    # Extra embed fields for Discord: [{"name", "value", "inline"?}] (payload only).
    fields: tuple = field(default=())
    subject_id: int | None = None  # what its type's actions act on (the invite), when it has any
    muted: bool = False  # written while its team or tournament was muted (the digest lists it apart)

    @property
    def type_info(self) -> NotificationType:
        return get_type(self.type)

    @property
    def action_url(self) -> str:
        return absolute_url(self.url)

    def discord_embed(self) -> Embed:
        """The Discord post: the text framed by its type's icon, colour and label."""
        type_info = self.type_info
        return Embed(title=self.title, url=self.action_url, colour=type_info.colour, icon=type_info.icon,
                     footer=f"DeltaCrown · {type_info.label}", body=self.body, timestamp=self.created_at,
                     fields=self.fields)

    @classmethod
    def from_notification(cls, notification) -> "ChannelMessage":
        return cls(type=notification.type, title=notification.title, body=notification.body or "",
                   url=notification.url, created_at=notification.created_at, subject_id=notification.subject_id)

    @classmethod
    def from_payload(cls, payload: dict | None, created_at: datetime | None = None) -> "ChannelMessage":
        payload = payload if isinstance(payload, dict) else {}
        type_name = payload.get("type")
        if type_name not in NOTIFICATION_TYPES:
            raise ValueError(f"delivery payload has unknown notification type {type_name!r}")
        raw_fields = payload.get("fields") if isinstance(payload.get("fields"), list) else []
        fields_ = tuple({"name": str(f.get("name", "")), "value": str(f.get("value", "")),
                         "inline": bool(f.get("inline", False))}
                        for f in raw_fields if isinstance(f, dict))
        return cls(type=type_name, title=str(payload.get("title") or NOTIFICATION_TYPES[type_name].label),
                   body=str(payload.get("body") or ""), url=payload.get("url") if isinstance(payload.get("url"), str) else None,
                   created_at=created_at or utcnow(), fields=fields_,
                   subject_id=payload["subject_id"] if isinstance(payload.get("subject_id"), int) else None)
