"""The notification center (/notifications) and the nav bar's unread badge.

Every action works twice: as a plain page (GET renders, POST redirects back, no
JavaScript needed) and, when htmx sends the request (`HX-Request`), as a partial
swap of only the part that changed, with `HX-Trigger: refreshBadge` so the badge
in the nav bar refreshes itself.
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_htmx import HTMX
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import Markup, escape

from ..accounts.views import _safe_next
from ..errors import Conflict, InvalidInput, NotFound
from ..links import remembered, site_path
from ..timeutil import utcnow
from .models import Notification
from .preferences import user_zone
from . import center as center_service
from .types import NOTIFICATION_TYPES

bp = Blueprint("notification_pages", __name__)
htmx = HTMX()  # `bool(htmx)`: the request came from htmx; bound to the app in init_app

PAGE_SIZE = 20
BADGE_POLL_SECONDS = 10  # the nav badge also refreshes at once on `refreshBadge`
REFRESH_BADGE = {"HX-Trigger": "refreshBadge"}


def init_app(app):
    htmx.init_app(app)
    app.register_blueprint(bp)


def refuse_without_csrf(error: CSRFError):
    """A page POST without a valid CSRF token (forged, or the form outlived the session):
    refused, nothing changed, and a message a person can act on."""
    message = "This page was open too long or did not come from DeltaCrown, so nothing was changed. " \
              "Reload the page and try again."
    if htmx:
        return render_template("notifications/_problem.html", message=message), 400
    return render_template("notifications/problem.html", message=message), 400


bp.register_error_handler(CSRFError, refuse_without_csrf)


# --- login for pages ---------------------------------------------------------

def page_login_required(view):
    """Logged-out users go to the login page and come back here afterwards.

    For htmx requests (e.g. the badge polling after the session expired) a
    redirect would be swapped into the page, so ask htmx to navigate instead.
    """

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_user.is_authenticated:
            return view(*args, **kwargs)
        if request.method == "GET" and not htmx:
            back = request.full_path.rstrip("?")
        else:
            back = _same_site_path(htmx.current_url) or _safe_next(request.form.get("next")) or request.path
        login_url = url_for("auth.login", next=back)
        if htmx:
            response = make_response("", 200)
            response.headers["HX-Redirect"] = login_url
            return response
        return redirect(login_url)

    return wrapped


def _same_site_path(url: str | None) -> str | None:
    """The path?query of an absolute URL on this host (htmx's HX-Current-URL)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # a header anyone can send: e.g. "https://[::1" cannot be parsed
        return None
    if parts.netloc and parts.netloc != request.host:
        return None
    return _safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


# --- time, in the player's zone ---------------------------------------------

# Formatted by hand rather than with strftime: English names whatever the process's locale,
# and twenty items' times were a tenth of the center's rendering.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ReaderClock:
    """Now, and today's date in the reader's zone: read once for a page of times, not once per
    time shown (a center page shows twenty)."""

    __slots__ = ("zone", "now", "today", "yesterday")

    def __init__(self, zone: ZoneInfo, now: datetime | None = None):
        self.zone, self.now = zone, now or utcnow()
        self.today = self.now.astimezone(zone).date()
        self.yesterday = self.today - timedelta(days=1)

    def relative(self, moment: datetime, local: datetime | None = None) -> str:
        """'just now', '5 min ago', '3 h ago', 'yesterday at 14:03', 'Mon at 09:00', '12 Nov at 10:00'.
        `local`: `moment` already in the zone, when the caller has it."""
        seconds = (self.now - moment).total_seconds()
        if seconds < 45:
            return "just now"
        if seconds < 3600:
            return f"{max(1, round(seconds / 60))} min ago"
        local = local or moment.astimezone(self.zone)
        day = local.date()
        if day == self.today:
            return f"{int(seconds // 3600)} h ago"
        clock = f"{local.hour:02d}:{local.minute:02d}"
        if day == self.yesterday:
            return f"yesterday at {clock}"
        if seconds < 6 * 24 * 3600:
            return f"{_DAYS[local.weekday()]} at {clock}"
        if local.year == self.today.year:
            return f"{local.day} {_MONTHS[local.month - 1]} at {clock}"
        return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"

    def tag(self, moment: datetime) -> Markup:
        """`<time>` saying how long ago, with the exact time as its title; both texts made from
        one conversion to the zone. The relative text is digits and fixed words: not escaped."""
        local = moment.astimezone(self.zone)
        return Markup(f'<time datetime="{moment.isoformat()}" title="{escape(exact_time(moment, self.zone, local))}">'
                      f'{self.relative(moment, local)}</time>')


def relative_time(moment: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """How long ago `moment` was, in words, for a reader in `zone` (ReaderClock.relative)."""
    return ReaderClock(zone, now).relative(moment)


def exact_time(moment: datetime, zone: ZoneInfo, local: datetime | None = None) -> str:
    local = local or moment.astimezone(zone)
    return (f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
            f"{local.hour:02d}:{local.minute:02d} {local.tzname()} ({zone.key})")


@bp.app_template_filter("reltime")
def _reltime_filter(moment, zone):
    return relative_time(moment, zone)


@bp.app_template_filter("exacttime")
def _exacttime_filter(moment, zone):
    return exact_time(moment, zone)


@bp.app_template_filter("timetag")
def _timetag_filter(moment, clock):
    """`<time>` saying how long ago, with the exact time as its title: one expression per
    item of the center instead of three (each costs the template a lookup, a call and an
    escape). `clock`: the page's ReaderClock, or the reader's zone."""
    return (clock if isinstance(clock, ReaderClock) else ReaderClock(clock)).tag(moment)


# --- the player's own notifications: queries live in center.py (shared with the API) ---

def own_notification_or_404(user, notification_id: int) -> Notification:
    """Someone else's id (or a missing one) is a 404: we do not say which."""
    try:
        return center_service.own_notification(user.id, notification_id)
    except NotFound:
        abort(404)


# --- filters -----------------------------------------------------------------

SHOW_CHOICES = {"archived": "Archived", "snoozed": "Snoozed"}


class CenterFilters:
    """The center's filters, read from the query string (GET) or the form (POST)."""

    def __init__(self, source):
        self.errors: list[str] = []
        raw_type = (source.get("type") or "").strip()
        self.type = raw_type or None
        if self.type and self.type not in NOTIFICATION_TYPES:
            self.errors.append(f"There is no notification type called “{raw_type[:40]}”; showing all types.")
            self.type = None
        self.unread = (source.get("unread") or "").lower() in ("1", "true", "on", "yes")
        # Which box: the inbox (default), the archived ones, or the ones snoozed until later.
        self.show = source.get("show") if source.get("show") in SHOW_CHOICES else None
        self.cursor = (source.get("cursor") or "").strip() or None
        self._url: str | None = None

    def args(self, **extra) -> dict:
        args = {"type": self.type, "unread": "1" if self.unread else None, "show": self.show}
        args.update(extra)
        return {k: v for k, v in args.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.type or self.unread or self.show)

    @property
    def archived(self) -> bool:
        return self.show == "archived"

    @property
    def snoozed(self) -> bool:
        return self.show == "snoozed"

    def url(self, **extra) -> str:
        if not extra:  # this view's own URL: asked for by the region, the items and their forms
            if self._url is None:
                self._url = url_for("notification_pages.center", **self.args())
            return self._url
        return url_for("notification_pages.center", **self.args(**extra))

    def query(self) -> str:
        """The filters as a query string ("" or "?type=..."), for links that keep them."""
        args = self.args()
        return f"?{urlencode(args)}" if args else ""


def _page(user, filters: CenterFilters):
    def page():
        return center_service.center_page(user.id, True if filters.unread else None, filters.type,
                                          archived=filters.archived, snoozed=filters.snoozed,
                                          cursor=filters.cursor, limit=PAGE_SIZE)
    try:
        return page()
    except InvalidInput:
        filters.errors.append("That “load more” link is not valid any more; showing the newest.")
        filters.cursor = None
        return page()


def _context(user, filters: CenterFilters, status_message: str | None = None) -> dict:
    items, next_cursor = _page(user, filters)
    # Rendering them is showing them: they are seen now (the badge counts unseen ones). Those
    # that were not seen until now are marked as just arrived on the page.
    fresh = set(center_service.seen_now(user.id, items)) if not filters.snoozed else set()
    # What the page needs besides its items, read once they are seen: the nav badge's count
    # and the zone of the player's times.
    unseen, zone_name = center_service.unseen_count_and_zone_name(user.id, cap=center_service.BADGE_COUNT_CAP)
    zone = user_zone(user, preference_zone=zone_name)
    return {
        "items": center_service.attach_actions(items),
        "fresh_ids": fresh,
        "next_cursor": next_cursor,
        "filters": filters,
        "zone": zone,
        "clock": ReaderClock(zone),  # the items' times, all against one "now"
        "unread_count": unseen,
        "types": NOTIFICATION_TYPES,
        "status_message": status_message,
    }


class ItemUrl:
    """The URL of one per-item route with the id left open: `url[notification_id]`. An item
    (a lookup, not a call: a call from a template costs Jinja an inspection of the callee)."""

    __slots__ = ("before", "after")

    def __init__(self, before: str, after: str):
        self.before, self.after = before, after

    def __getitem__(self, notification_id: int) -> str:
        return f"{self.before}{int(notification_id)}{self.after}"


class ItemUrls:
    """Per page, the URL of each per-item route, made once with url_for and filled in per item
    (`urls.read[n.id]`, or `urls[name][n.id]`): url_for for each of twenty items' five forms was
    a third of the center's rendering."""

    PLACEHOLDER = 2147483647  # the largest id: no other part of these paths contains it
    ENDPOINTS = {"open": "notification_pages.open_", "read": "notification_pages.read",
                 "archive": "notification_pages.archive", "unarchive": "notification_pages.unarchive",
                 "snooze": "notification_pages.snooze", "unsnooze": "notification_pages.unsnooze",
                 "menu": "notification_pages.menu"}

    def __init__(self, menu_query: str = ""):
        """`menu_query`: the list's filters (CenterFilters.query()), kept by each item's menu."""
        for name, endpoint in self.ENDPOINTS.items():
            before, after = url_for(endpoint, notification_id=self.PLACEHOLDER).split(str(self.PLACEHOLDER))
            setattr(self, name, ItemUrl(before, after + menu_query if name == "menu" else after))

    def __getitem__(self, name: str) -> ItemUrl:
        if name not in self.ENDPOINTS:
            raise KeyError(name)
        return getattr(self, name)


ITEM_URLS_MAX = 1024  # one per script root and filter combination: a few hundred under one root


def item_urls(menu_query: str = "") -> ItemUrls:
    """The ItemUrls for this request: the same for every request under one script root, so
    made once per app (their url_for calls were a twentieth of a center page). The menu's
    query is made of the filters' choices: a bounded set."""
    return remembered(current_app.extensions.setdefault("notification_item_urls", {}),
                      (request.script_root, menu_query), lambda: ItemUrls(menu_query), ITEM_URLS_MAX)


@bp.app_context_processor
def _nav_helpers():
    # Functions, so the nav bar costs a query only when it is actually rendered.
    return {
        "unread_badge_count": lambda: center_service.unseen_count(current_user.id, cap=center_service.BADGE_COUNT_CAP)
        if current_user.is_authenticated else 0,
        "badge_poll_seconds": lambda: current_app.config.get("BADGE_POLL_SECONDS", BADGE_POLL_SECONDS),
        "snooze_choices": center_service.SNOOZE_CHOICES,
        "item_urls": item_urls,
    }


# --- views -------------------------------------------------------------------

@bp.get("/notifications")
@page_login_required
def center():
    filters = CenterFilters(request.args)
    context = _context(current_user, filters)
    status = 400 if filters.errors else 200
    # Items shown for the first time were marked seen: the nav badge must follow.
    headers = REFRESH_BADGE if context["fresh_ids"] else {}
    if htmx and not htmx.history_restore_request:
        if filters.cursor and htmx.target == "load-more":
            # "load more": the next items plus the next "load more", appended in place
            return render_template("notifications/_items.html", **context), status, headers
        return render_template("notifications/_region.html", **context), (422 if filters.errors else 200), headers
    return render_template("notifications/center.html", **context), status


@bp.get("/notifications/badge")
@page_login_required
def badge():
    count = center_service.unseen_count(current_user.id, cap=center_service.BADGE_COUNT_CAP)
    # The poller sends the count it shows. Unchanged: 204, htmx leaves the DOM alone (no
    # churn, no repeated screen-reader announcement every 10 s). More arrived: tell the
    # page, so an open center puts the new ones on top without a reload.
    shown = request.args.get("shown", "")
    if shown.isdigit() and int(shown) == count:
        response = make_response("", 204)
    else:
        response = make_response(render_template("notifications/_badge.html", unread_count=count))
        if shown.isdigit() and count > int(shown):
            response.headers["HX-Trigger"] = "notificationsArrived"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/notifications/<int:notification_id>/menu")
@page_login_required
def menu(notification_id: int):
    """An item's menu (archive, remind me later, mute), loaded when it is opened: rendering it
    for every item of a page was most of the center's rendering. Without JavaScript the
    item's link shows it as a page, the item with its menu open. The query string holds the
    center's filters, so each form returns to the list it came from."""
    notification = own_notification_or_404(current_user, notification_id)
    filters = CenterFilters(request.args)
    context = {"n": notification, "zone": user_zone(current_user), "types": NOTIFICATION_TYPES, "filters": filters}
    if htmx:
        return render_template("notifications/_item_menu.html", **context)
    center_service.attach_actions([notification])
    return render_template("notifications/item_menu.html", menu_open=True, **context)


@bp.post("/notifications/<int:notification_id>/read")
@page_login_required
def read(notification_id: int):
    notification = own_notification_or_404(current_user, notification_id)
    center_service.mark_read(current_user.id, notification.id)
    center_service.attach_actions([notification])
    if htmx:
        filters = CenterFilters(request.form)
        return (render_template("notifications/_item.html", n=notification, zone=user_zone(current_user),
                                types=NOTIFICATION_TYPES, filters=filters), 200, REFRESH_BADGE)
    return redirect(_safe_next(request.form.get("next")) or url_for(".center"), 303)


@bp.post("/notifications/<int:notification_id>/actions/<name>")
@page_login_required
def act(notification_id: int, name: str):
    """Press one of a notification's buttons (Accept / Decline): the item answers in place
    (htmx) or the center says what happened (no JavaScript). When the action no longer
    applies (the invite expired or was answered), nothing changes and the item says why."""
    user = current_user._get_current_object()
    outcome = problem = None
    try:
        notification, result = center_service.run_action(user, notification_id, name)
        outcome, status = result.message, 200
    except NotFound:
        abort(404)
    except Conflict as exc:
        notification = center_service.attach_actions([own_notification_or_404(user, notification_id)])[0]
        problem, status = exc.message, 409
    if htmx:
        return (render_template("notifications/_item.html", n=notification, zone=user_zone(user),
                                types=NOTIFICATION_TYPES, filters=CenterFilters(request.form), outcome=outcome,
                                problem=problem), status, REFRESH_BADGE)
    flash(outcome or problem)
    return redirect(_safe_next(request.form.get("next")) or url_for(".center"), 303)


# --- archive and "remind me later" --------------------------------------------

def _put_away(notification, message: str, undo: str | None = None):
    """The item left the list it was in (archived, snoozed, back from either): htmx swaps it
    for a line saying so (with an undo button); without JavaScript, back to the list with it."""
    if htmx:
        return (render_template("notifications/_item_gone.html", n=notification, message=message, undo=undo,
                                filters=CenterFilters(request.form)), 200, REFRESH_BADGE)
    flash(message)
    return redirect(_safe_next(request.form.get("next")) or url_for(".center"), 303)


@bp.post("/notifications/<int:notification_id>/archive")
@page_login_required
def archive(notification_id: int):
    notification = own_notification_or_404(current_user, notification_id)
    center_service.archive(current_user.id, notification.id)
    return _put_away(notification, f"Archived “{notification.title}”.", undo="unarchive")


@bp.post("/notifications/<int:notification_id>/unarchive")
@page_login_required
def unarchive(notification_id: int):
    notification = own_notification_or_404(current_user, notification_id)
    center_service.unarchive(current_user.id, notification.id)
    return _put_away(notification, f"“{notification.title}” is back in your notifications.")


@bp.post("/notifications/<int:notification_id>/snooze")
@page_login_required
def snooze(notification_id: int):
    """Remind me later: 1 hour, 3 hours, tomorrow 09:00 (the player's zone) or a chosen time."""
    notification = own_notification_or_404(current_user, notification_id)
    zone = user_zone(current_user)
    try:
        until = center_service.snooze_choice_until(request.form.get("choice", ""), zone, request.form.get("at"))
        center_service.snooze(current_user.id, notification.id, until)
    except InvalidInput as exc:
        problem = f"Not snoozed: the time {exc.fields.get('until', exc.message)}."
        if htmx:
            center_service.attach_actions([notification])
            return (render_template("notifications/_item.html", n=notification, zone=zone, types=NOTIFICATION_TYPES,
                                    filters=CenterFilters(request.form), problem=problem), 422)
        flash(problem)
        return redirect(_safe_next(request.form.get("next")) or url_for(".center"), 303)
    return _put_away(notification, f"Snoozed “{notification.title}” until {exact_time(until, zone)}.",
                     undo="unsnooze")


@bp.post("/notifications/<int:notification_id>/unsnooze")
@page_login_required
def unsnooze(notification_id: int):
    notification = own_notification_or_404(current_user, notification_id)
    center_service.unsnooze(current_user.id, notification.id)
    return _put_away(notification, f"“{notification.title}” is back in your notifications.")


@bp.post("/notifications/<int:notification_id>/open")
@page_login_required
def open_(notification_id: int):
    """Clicking a notification marks it read and follows its link."""
    notification = own_notification_or_404(current_user, notification_id)
    center_service.mark_read(current_user.id, notification.id)
    target = _link_target(notification.url) or url_for(".center")
    if htmx:
        response = make_response("", 200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)


def _link_target(url: str | None) -> str | None:
    """Only links into this site: a path, or an absolute URL on PUBLIC_BASE_URL (as its path)."""
    return site_path(url, current_app.config.get("PUBLIC_BASE_URL", ""))


@bp.post("/notifications/read-all")
@page_login_required
def read_all():
    return _bulk_action(center_service.mark_all_read,
                        lambda n: f"Marked {n} notification{'s' if n != 1 else ''} as read.")


@bp.post("/notifications/clear-read")
@page_login_required
def clear():
    archived = CenterFilters(request.form).archived  # clears the box it was pressed in
    return _bulk_action(lambda user_id, type_name: center_service.clear_read(user_id, type_name, archived),
                        lambda n: f"Cleared {n} read notification{'s' if n != 1 else ''}.")


def _bulk_action(action, describe):
    """Apply `action(user_id, type)` to the notifications the posted filters select and say
    how many changed (`describe(count)`); forged filters change nothing."""
    filters = CenterFilters(request.form)
    if filters.errors:
        return _refuse_bulk_action(filters)
    changed = action(current_user.id, filters.type)
    return _after_bulk_action(filters, describe(changed))


def _refuse_bulk_action(filters: CenterFilters):
    """A forged filter: change nothing, say why."""
    filters.errors[-1] = filters.errors[-1].replace("showing all types", "nothing was changed")
    if htmx:
        return render_template("notifications/_region.html", **_context(current_user, filters)), 422
    flash(filters.errors[-1])
    return redirect(url_for(".center"), 303)


def _after_bulk_action(filters: CenterFilters, message: str):
    filters.cursor = None
    if htmx:
        return (render_template("notifications/_region.html", **_context(current_user, filters, message)),
                200, REFRESH_BADGE)
    flash(message)
    return redirect(filters.url(), 303)
