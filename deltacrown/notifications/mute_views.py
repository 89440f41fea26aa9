"""Mute controls on the pages: a team's page, a tournament's page, a notification's menu and the
preference editor's "Muted" section all post here (mutes.py does the work).

Templates ask two globals: `mute_of(kind, id)` (the viewer's mute in force of that team or
tournament, or None) and `mute_subject(notification)` (what a notification is about, from its
link: ("team", id) for /teams/<id>, ("tournament", id) for /tournaments/<id>, else None).
"""
from __future__ import annotations

import re

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from ..accounts.views import _safe_next
from ..errors import ServiceError
from ..extensions import db
from ..teams.models import Team
from ..tournaments.models import Tournament
from . import mutes
from .preferences import user_zone
from .views import htmx, page_login_required, refuse_without_csrf

bp = Blueprint("mute_pages", __name__)
bp.register_error_handler(CSRFError, refuse_without_csrf)

KINDS = {"team": Team, "tournament": Tournament}
_SUBJECT = re.compile(r"^/(teams|tournaments)/(\d+)(?:[/?#].*)?$")


def init_app(app):
    app.register_blueprint(bp)
    app.jinja_env.globals.update(mute_of=mute_of, mute_subject=mute_subject, mute_durations=mutes.DURATIONS)


def mute_of(kind: str, subject_id: int):
    if not current_user.is_authenticated:
        return None
    key = {"team_id": subject_id} if kind == "team" else {"tournament_id": subject_id}
    return mutes.active_mute_for(current_user.id, **key)


def mute_subject(notification) -> tuple[str, int] | None:
    match = _SUBJECT.match(getattr(notification, "url", None) or "")
    if not match:
        return None
    return ("team" if match.group(1) == "teams" else "tournament"), int(match.group(2))


def subject_name(row: mutes.Mute) -> str:
    if row.team_id is not None:
        team = db.session.get(Team, row.team_id)
        return team.name if team else f"team {row.team_id}"
    tournament = db.session.get(Tournament, row.tournament_id)
    return tournament.name if tournament else f"tournament {row.tournament_id}"


def muted_list(user) -> list[dict]:
    """The editor's "Muted" section: the user's mutes in force, with names and links."""
    return [{"mute": m, "name": subject_name(m),
             "url": f"/teams/{m.team_id}" if m.team_id is not None else f"/tournaments/{m.tournament_id}"}
            for m in mutes.active_mutes(user.id)]


def _control(kind: str, subject_id: int, status: int = 200, message: str | None = None, problem: str | None = None):
    return render_template("notifications/_mute_control.html", kind=kind, subject_id=subject_id,
                           mute_message=message, mute_problem=problem, zone=user_zone(current_user)), status


def _back():
    return _safe_next(request.form.get("next")) or url_for("notification_pages.center")


@bp.post("/mutes")
@page_login_required
def mute():
    kind = request.form.get("kind", "")
    raw_id = request.form.get("subject_id", "")
    try:
        if kind not in KINDS or not raw_id.isdigit() or len(raw_id) > 10:
            raise mutes.InvalidInput("Choose a team or a tournament to mute.", fields={"subject_id": "unknown"})
        subject_id = int(raw_id)
        until = mutes.until_for(request.form.get("duration", ""))
        mutes.mute(current_user.id, until=until, **({"team_id": subject_id} if kind == "team"
                                                    else {"tournament_id": subject_id}))
    except ServiceError as exc:
        db.session.rollback()
        if htmx and kind in KINDS and raw_id.isdigit() and len(raw_id) <= 10:
            return _control(kind, int(raw_id), 422, problem=exc.message)
        flash(exc.message)
        return redirect(_back(), 303)
    message = f"Muted {mutes.describe_until(until, user_zone(current_user))}."
    if htmx and request.form.get("target") == "control":
        return _control(kind, subject_id, message=message)
    flash(message)
    return redirect(_back(), 303)


@bp.post("/mutes/<int:mute_id>/unmute")
@page_login_required
def unmute(mute_id: int):
    kind = request.form.get("kind", "")
    raw_id = request.form.get("subject_id", "")
    try:
        mutes.unmute(current_user.id, mute_id)
    except ServiceError as exc:
        flash(exc.message)
        return redirect(_back(), 303)
    if htmx and request.form.get("target") == "control" and kind in KINDS and raw_id.isdigit():
        return _control(kind, int(raw_id), message="Unmuted: you get its news as before.")
    if htmx and request.form.get("target") == "muted":
        return render_template("notifications/_muted_section.html", muted=muted_list(current_user),
                               zone=user_zone(current_user), mute_message="Unmuted.")
    flash("Unmuted: you get its news as before.")
    return redirect(_back(), 303)
