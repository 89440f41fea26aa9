"""Sending one Delivery row over its channel, exactly once, and recording what happened.

Exactly once, as far as a network allows:
- A Redis lease (SET NX with expiry) per delivery: two jobs for the same
  delivery (a duplicate enqueue, a retry racing a slow first try) never send
  at the same time; the loser raises DeliveryBusy and RQ retries it later,
  when it finds the row sent and does nothing. The lease expires on its own if
  the worker dies, so the delivery is not stuck.
- The claim is one conditional UPDATE .. RETURNING the row (status 'pending' -> attempts + 1,
  last_tried_at now): a row already sent, failed or skipped is never sent again.
- The only unavoidable duplicate: a worker killed after the provider accepted
  the message but before the row was marked sent.

Consent is checked at send time, not only when the delivery was written: an
email whose recipient has since unsubscribed (from all email, or from email of
its type) and a personal Discord post the player has since turned off end
`skipped`, with the reason, and nothing is sent. A batch reads the email
consent of all its deliveries in one query (EmailConsent), and with it the time
zone each recipient chose for the times their email shows.

Suppression: an email to an address on the suppression list (notifications.suppression)
ends `suppressed` without an SMTP attempt; a permanent refusal while sending (SMTP 5xx at
RCPT or DATA) ends `bounced` after that one attempt and suppresses the address.

Held sends (held.py): a delivery whose `send_after` has not come is never claimed (it
answers "held" and stays pending for its held job). An email held by the user's email
delay whose in-app copy was seen meanwhile ends `skipped` with "seen in app".

Errors: temporary ones (timeouts, connection errors, 5xx, 429, SMTP 4xx) are
recorded on the row and raised as RetryableDeliveryError so RQ retries with
backoff; on the last try the row is marked failed. Permanent ones (other 4xx,
other SMTP 5xx, unknown target) mark it failed at once. A Discord 404 also switches
the webhook off and tells its owner in-app.

Cards: a team or platform Discord delivery whose payload names a `card` ("match:<id>",
"standings:<id>") is that webhook's one message about it, posted once and then edited in
place (cards.py: `_send_discord_card`); the same error rules apply, and a card deleted in
Discord is posted again.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter

from sqlalchemy import func, or_, select, update

from ..accounts.models import User
from ..channels import discord as discord_channel
from ..channels.smtp import EmailSendError
from ..dbutil import commit
from ..extensions import db
from ..masking import mask_secrets
from ..outbox.services import emit
from ..queue import take_lease
from ..signals import checkpoint
from ..teams.models import Team
from ..timeutil import utcnow
from . import cards, mail_headers, suppression
from .content import ChannelMessage
from .emails import send_notification_email
from .models import Delivery, EmailSuppression, Notification, NotificationPreference, chosen_channels
from .preferences import SOURCE_SYSTEM, update_preferences, user_zone
from .types import DISCORD, EMAIL, NOTIFICATION_TYPES

log = logging.getLogger(__name__)

LEASE_SECONDS = 240  # longer than send_delivery's job timeout


class RetryableDeliveryError(Exception):
    """A temporary failure: raised so RQ retries the job after its next interval."""


class DeliveryBusy(RetryableDeliveryError):
    """Another job holds this delivery right now."""


class PermanentDeliveryError(Exception):
    """Retrying cannot help (bad target, refused recipient, 4xx)."""


class DeliverySkipped(Exception):
    """The recipient no longer wants this message (unsubscribed, channel turned off): not sent, not an error."""

    status = "skipped"


class DeliverySuppressed(DeliverySkipped):
    """The address is on the suppression list (it bounced, or its owner complained): not sent."""

    status = "suppressed"


class DeliveryBounced(PermanentDeliveryError):
    """The receiving server refused the address for good (5xx at RCPT/DATA); it is suppressed now."""

    status = "bounced"


class _WebhookGone(PermanentDeliveryError):
    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


# --- what to send, and where ----------------------------------------------------

def _message_for(delivery: Delivery) -> ChannelMessage:
    if delivery.notification_id is not None:
        notification = db.session.get(Notification, delivery.notification_id)
        if notification is None:
            raise PermanentDeliveryError(f"notification {delivery.notification_id} no longer exists")
        return ChannelMessage.from_notification(notification)
    try:
        return ChannelMessage.from_payload(delivery.payload, created_at=delivery.created_at)
    except ValueError as exc:
        raise PermanentDeliveryError(str(exc)) from None


def _recipient_user(delivery: Delivery) -> User | None:
    user_id = delivery.user_id
    if user_id is None and delivery.notification_id is not None:
        user_id = db.session.scalar(select(Notification.user_id).where(Notification.id == delivery.notification_id))
    return db.session.get(User, user_id) if user_id is not None else None


def _target_owner(target: str):
    """("user", User) / ("team", Team) / ("platform", None) for a Discord target string."""
    kind, _, ident = (target or "").partition(":")
    if kind == "platform" and not ident:
        return "platform", None
    if kind in ("user", "team") and ident.isdigit():
        owner = db.session.get(User if kind == "user" else Team, int(ident))
        if owner is None:
            raise PermanentDeliveryError(f"Discord target {target!r}: that {kind} no longer exists")
        return kind, owner
    raise PermanentDeliveryError(f"unknown Discord target {target!r} (expected user:<id>, team:<id> or platform)")


def _webhook_url(kind: str, owner, target: str) -> str:
    from flask import current_app

    if kind == "user":
        url = NotificationPreference.get_or_create_for_user(owner).discord_webhook_url
    elif kind == "team":
        url = owner.discord_webhook_url
    else:
        url = current_app.config.get("DISCORD_WEBHOOK_URL")
    if not url:
        raise PermanentDeliveryError(f"{target} has no Discord webhook set (switched off or never set)")
    return url


# --- consent at send time -------------------------------------------------------

CONSENT_MAX_AGE_SECONDS = 5.0
SEEN_IN_APP = "seen in app"  # a long batch re-reads consent for its remaining deliveries after this


def email_consent(delivery_ids) -> dict[int, tuple[str | None, str | None]]:
    """{delivery id: (why its recipient no longer wants it, or None; the time zone chosen in
    their preferences, or None)} for the email deliveries among `delivery_ids`, in one query
    (a user without a preference row has the defaults)."""
    pref = NotificationPreference
    recipient = func.coalesce(Delivery.user_id, Notification.user_id)
    rows = db.session.execute(
        select(Delivery.id, Notification.type, Delivery.payload, pref.opt_out_email, pref.channels, pref.timezone,
               Notification.seen_at, Notification.is_read, Notification.snoozed_until, Notification.archived_at,
               pref.email_after_unseen_minutes)
        .select_from(Delivery)
        .outerjoin(Notification, Notification.id == Delivery.notification_id)
        .outerjoin(pref, pref.user_id == recipient)
        .where(Delivery.id.in_(list(delivery_ids)), Delivery.channel == EMAIL))
    consent: dict[int, tuple[str | None, str | None]] = {}
    for (delivery_id, notification_type, payload, opt_out_email, channels, zone_name, seen_at, read, snoozed_until,
         archived_at, delay) in rows:
        type_name = notification_type or (payload or {}).get("type")
        # Seen, opened, or dealt with in the app (snoozing resets "seen" for when it comes back;
        # archiving puts it away): the app was enough.
        handled_in_app = seen_at is not None or read or snoozed_until is not None or archived_at is not None
        if handled_in_app and delay:
            refusal = SEEN_IN_APP  # "email only when the app was not enough" (held.py)
        elif opt_out_email:
            refusal = "not sent: the recipient unsubscribed from all email"
        elif type_name in NOTIFICATION_TYPES and EMAIL not in chosen_channels(channels, type_name):
            label = NOTIFICATION_TYPES[type_name].label
            refusal = f"not sent: the recipient turned off email for “{label}”"
        else:
            refusal = None  # an unknown type fails later, when the message is built
        consent[delivery_id] = (refusal, zone_name)
    return consent


class EmailConsent:
    """Consent of a batch's email recipients, read for the whole batch in one query just before
    its sends; read again for the rest of the batch once older than CONSENT_MAX_AGE_SECONDS, so
    an unsubscribe during a long batch still stops the sends after it."""

    def __init__(self, delivery_ids):
        self._ids = list(delivery_ids)
        self._position = {delivery_id: n for n, delivery_id in enumerate(self._ids)}
        self._consent: dict[int, tuple[str | None, str | None]] = {}
        self._read_at = None

    def _current(self, delivery_id: int) -> tuple[str | None, str | None]:
        stale = self._read_at is None or time.monotonic() - self._read_at > CONSENT_MAX_AGE_SECONDS
        if stale or delivery_id not in self._consent:
            start = self._position.get(delivery_id)
            rest = self._ids[start:] if start is not None else [delivery_id]
            self._consent = email_consent(rest)
            self._read_at = time.monotonic()
        return self._consent.get(delivery_id, (None, None))

    def refusal(self, delivery_id: int) -> str | None:
        return self._current(delivery_id)[0]

    def preference_zone(self, delivery_id: int) -> str | None:
        """The zone the recipient chose in their preferences (None: their account's applies)."""
        return self._current(delivery_id)[1]


def _email_parts(delivery: Delivery) -> tuple[ChannelMessage, User | None, EmailSuppression | None]:
    """What the email says, who it is to, and the address's active suppression (or None). For a
    notification's email, one read of the three (three reads were a quarter of a send under load)."""
    if delivery.notification_id is None or not suppression.normalize(delivery.target):
        return _message_for(delivery), _recipient_user(delivery), suppression.active_suppression(delivery.target)
    recipient_id = Notification.user_id if delivery.user_id is None else delivery.user_id
    row = db.session.execute(
        select(Notification, User, EmailSuppression).select_from(Notification)
        .outerjoin(User, User.id == recipient_id)
        .outerjoin(EmailSuppression, suppression.listing(delivery.target))
        .where(Notification.id == delivery.notification_id)).first()
    if row is None:
        raise PermanentDeliveryError(f"notification {delivery.notification_id} no longer exists")
    notification, user, listed = row
    return ChannelMessage.from_notification(notification), user, listed


def _send_email(delivery: Delivery, preference_zone: str | None) -> tuple[str | None, str | None]:
    message, user, listed = _email_parts(delivery)
    if user is None:
        raise PermanentDeliveryError("email delivery without a recipient user")
    if listed is not None:
        raise DeliverySuppressed(f"not sent: {delivery.target} is on the suppression list "
                                 f"({listed.reason}{', ' + listed.code if listed.code else ''})")
    try:
        send_notification_email(user, delivery.target, message, user_zone(user, preference_zone), delivery.id)
    except EmailSendError as exc:
        if exc.refused:  # a bounce at send time: never again to this address
            suppression.refused_while_sending(mail_headers.DELIVERY, delivery.id, delivery.target, user.id,
                                              exc.code, exc.reply, message.type)
            raise DeliveryBounced(str(exc)) from exc
        if exc.temporary:
            raise RetryableDeliveryError(str(exc)) from exc
        raise PermanentDeliveryError(str(exc)) from exc
    return None, None


def _send_discord(delivery: Delivery) -> tuple[str | None, str | None]:
    message = _message_for(delivery)
    kind, owner = _target_owner(delivery.target)
    if kind == "user" and DISCORD not in NotificationPreference.get_or_create_for_user(owner).get_channels_for_type(message.type):
        raise DeliverySkipped("not sent: the recipient has turned Discord off for this type")
    url = _webhook_url(kind, owner, delivery.target)
    card = (delivery.payload or {}).get("card") if kind in ("team", "platform") else None
    if card:
        return _send_discord_card(delivery, card, url, message)
    try:
        result = discord_channel.post_to_webhook(url, discord_channel.build_payload(message.discord_embed()))
    except discord_channel.DiscordError as exc:
        raise _delivery_error(exc, url) from exc
    return result.message_id, result.warning


def _delivery_error(exc: discord_channel.DiscordError, url: str) -> Exception:
    """What a Discord failure means for the delivery: the webhook is gone, try again, or give up."""
    if exc.webhook_gone:
        return _WebhookGone(str(exc), url)
    if exc.temporary:
        return RetryableDeliveryError(str(exc))
    return PermanentDeliveryError(str(exc))


def _send_discord_card(delivery: Delivery, card: str, url: str, message: ChannelMessage) -> tuple[str | None, str | None]:
    """A card (cards.py): the webhook's one message about the match / the standings, edited in place."""
    try:
        return cards.send_card(card, delivery.target, url, message)
    except cards.CardBusy as exc:
        raise RetryableDeliveryError(str(exc)) from exc
    except discord_channel.DiscordError as exc:
        raise _delivery_error(exc, url) from exc


# --- the webhook is gone -----------------------------------------------------------

def switch_off_gone_webhook(target: str, url: str) -> None:
    """Discord said 404: stop posting there, and tell the webhook's owner (once per URL)."""
    kind, owner = _target_owner(target)
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    if kind == "user":
        if NotificationPreference.get_or_create_for_user(owner).discord_webhook_url == url:
            update_preferences(owner, {"discord_webhook_url": None}, SOURCE_SYSTEM)
        _tell_owner("user", owner.id, digest)
    elif kind == "team":
        if owner.discord_webhook_url == url:
            owner.discord_webhook_url = None
        _tell_owner("team", owner.id, digest)
    else:
        log.error("The platform Discord webhook (DISCORD_WEBHOOK_URL) no longer exists; fix the configuration")
    db.session.commit()


def _tell_owner(kind: str, owner_id: int, digest: str) -> None:
    # Committed with the switch-off; the reactions notify the owner through the registry's
    # webhook_disabled entry (the player, or the team's captain), once per URL.
    emit("webhook_disabled", user_id=owner_id if kind == "user" else None,
         team_id=owner_id if kind == "team" else None, url_digest=digest)


# --- the send ---------------------------------------------------------------------

def _lease(delivery_id: int):
    return take_lease(f"dc:delivery-lease:{delivery_id}", LEASE_SECONDS)


def _finish(delivery_id: int, **values) -> None:
    if values.get("last_error"):
        values["last_error"] = mask_secrets(values["last_error"])  # shown on pages; never a token
    # No session sync: the commit right after expires the loaded row anyway.
    db.session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending")
                       .values(**values).execution_options(synchronize_session=False))
    db.session.commit()


def _not_claimed(delivery_id: int) -> dict:
    """The answer for a delivery the claim did not take: gone, done (sent, failed, skipped...)
    or held (quiet hours, email delay: never before its time; its held job sends it, held.py)."""
    row = db.session.execute(select(Delivery.status, Delivery.send_after).where(Delivery.id == delivery_id)).first()
    db.session.rollback()
    if row is None:
        return {"delivery_id": delivery_id, "status": "missing"}
    status, send_after = row
    if status != "pending":
        return {"delivery_id": delivery_id, "status": status, "already_done": True}
    return {"delivery_id": delivery_id, "status": "held", "send_after": send_after and send_after.isoformat()}


def send_delivery(delivery_id: int, final_attempt: bool = True, consent: EmailConsent | None = None) -> dict:
    """Send one delivery (see module doc). Returns {"status", ...} for the job result.

    `final_attempt`: no retry will follow, so a temporary failure is recorded as failed.
    `consent`: the batch's EmailConsent (without it, an email's consent is read for it alone).
    """
    release = _lease(delivery_id)
    if release is None:
        raise DeliveryBusy(f"delivery {delivery_id} is being sent by another job")
    try:
        # The claim is the read too: one UPDATE .. RETURNING the row, kept loaded through its
        # commit (a read before the claim and one after it were a third of a send's statements).
        delivery = db.session.scalars(
            update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending",
                                   or_(Delivery.send_after.is_(None), Delivery.send_after <= utcnow()))
            .values(attempts=Delivery.attempts + 1, last_tried_at=utcnow()).returning(Delivery)
            .execution_options(populate_existing=True)).first()
        if delivery is None:
            return _not_claimed(delivery_id)
        commit(keep_loaded=True)
        checkpoint.send("delivery:before_send")  # leased and claimed, nothing sent yet
        try:
            if delivery.channel == EMAIL:
                # The player may have unsubscribed since the delivery was created (a retry, a late batch).
                consent = consent or EmailConsent([delivery_id])
                refusal = consent.refusal(delivery_id)
                if refusal:
                    raise DeliverySkipped(refusal)
                external_id, warning = _send_email(delivery, consent.preference_zone(delivery_id))
            elif delivery.channel == DISCORD:
                external_id, warning = _send_discord(delivery)
            else:
                raise PermanentDeliveryError(f"channel {delivery.channel!r} is not delivered by this service")
        except DeliverySkipped as exc:
            log.info("delivery %s (%s to %s) %s: %s", delivery_id, delivery.channel, delivery.target, exc.status, exc)
            _finish(delivery_id, status=exc.status, last_error=str(exc))
            return {"delivery_id": delivery_id, "status": exc.status, "reason": str(exc)}
        except _WebhookGone as exc:
            log.warning("delivery %s to %s: webhook gone, switching it off: %s", delivery_id, delivery.target, exc)
            _finish(delivery_id, status="failed", last_error=str(exc))
            switch_off_gone_webhook(delivery.target, exc.url)
            return {"delivery_id": delivery_id, "status": "failed", "error": str(exc), "webhook_disabled": True}
        except PermanentDeliveryError as exc:
            status = getattr(exc, "status", "failed")
            log.warning("delivery %s (%s to %s) %s: %s", delivery_id, delivery.channel, delivery.target, status, exc)
            _finish(delivery_id, status=status, last_error=str(exc))
            return {"delivery_id": delivery_id, "status": status, "error": str(exc)}
        except Exception as exc:
            db.session.rollback()
            temporary = isinstance(exc, RetryableDeliveryError)
            error = mask_secrets(str(exc) if temporary else f"unexpected error: {type(exc).__name__}: {exc}")
            if not temporary:
                log.exception("delivery %s: unexpected error", delivery_id)
            log.warning("delivery %s (%s) attempt failed%s: %s", delivery_id, delivery.channel,
                        "" if final_attempt else ", will retry", error)
            if final_attempt:
                attempts = db.session.scalar(select(Delivery.attempts).where(Delivery.id == delivery_id))
                _finish(delivery_id, status="failed", last_error=f"gave up after {attempts} attempt(s): {error}")
                return {"delivery_id": delivery_id, "status": "failed", "error": error}
            _finish(delivery_id, last_error=error)
            if temporary:
                raise
            raise RetryableDeliveryError(error) from exc
        _finish(delivery_id, status="sent", sent_at=utcnow(), external_id=external_id, last_error=warning)
        return {"delivery_id": delivery_id, "status": "sent", "external_id": external_id}
    finally:
        release()


def send_batch(delivery_ids, retry_later=None, budget_seconds: float | None = None, continue_later=None) -> dict:
    """First try of each delivery in a batch (the `send_deliveries` job). Returns counts by outcome.

    A temporary failure is handed to `retry_later(delivery_id)` (its own job on the retry
    schedule) so one slow or failing target never holds up the rest; without `retry_later`
    this was the only try and the delivery is marked failed. Past `budget_seconds` the
    unsent rest goes to `continue_later(ids)` (a new batch job).
    """
    started = time.monotonic()
    counts: Counter = Counter()
    consent = EmailConsent(delivery_ids)
    for position, delivery_id in enumerate(delivery_ids):
        # (Never before the first send, so every batch job makes progress.)
        if position and budget_seconds is not None and continue_later and time.monotonic() - started > budget_seconds:
            rest = list(delivery_ids[position:])
            continue_later(rest)
            counts["continued_in_new_batch"] += len(rest)
            break
        try:
            outcome = send_delivery(delivery_id, final_attempt=retry_later is None, consent=consent)
        except RetryableDeliveryError:
            if retry_later is None:  # only DeliveryBusy gets here: the job holding it finishes it
                counts["busy"] += 1
                continue
            retry_later(delivery_id)
            counts["retrying"] += 1
            continue
        counts["already_" + outcome["status"] if outcome.get("already_done") else outcome["status"]] += 1
    return dict(counts)
