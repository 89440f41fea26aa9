"""The ops dashboard (/ops, admins only): queues, workers, failed and recurring
jobs, the scheduler, job health, deliveries, outbox and payouts (and the payouts awaiting a
second admin's approval: approve / reject, economy/approvals.py), with HTMX partial refreshes.

Each panel is its own partial template; the full page includes them all, and
HTMX requests get just the panel (after an action, with the outcome message).
Without JavaScript every form still works (POST, then redirect with a flash).
Redis being down is shown on the page, never a 500.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime
from functools import wraps

from flask import (Blueprint, abort, current_app, flash, make_response, redirect, render_template, request,
                   url_for)
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from ..economy import approvals as payout_approvals
from ..errors import ServiceError
from ..extensions import db, login_manager
from ..queue import get_redis
from ..notifications import suppression
from ..notifications.preferences import user_zone
from ..notifications.reminders import upcoming_reminders
from ..timeutil import UTC_ZONE, utcnow
from . import actions, charts, delivery_rates, overview, schedule, stats
from .runs import start_job

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__, url_prefix="/ops")

# How often the live panels re-fetch themselves (app config can shorten it, e.g. tests).
LIVE_REFRESH_SECONDS = 10
RECURRING_REFRESH_SECONDS = 30


def admin_required(view):
    """Logged-out visitors go to the login page (and come back); non-admins get 403."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            if request.headers.get("HX-Request"):
                # A partial refresh after the session ended: send the whole page to the login.
                response = make_response("", 401)
                response.headers["HX-Redirect"] = url_for("auth.login", next=url_for("ops.dashboard"))
                return response
            return login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _redis():
    """(connection, None) when Redis answers, else (None, what went wrong)."""
    try:
        connection = get_redis()
        connection.ping()
        return connection, None
    except Exception as exc:  # noqa: BLE001 - redis raises several connection error types
        return None, _describe(exc)


def _db_section(reader, *args):
    """(value, None), or (None, error) when the database query fails."""
    try:
        return reader(*args), None
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("ops dashboard: database read failed", exc_info=True)
        return None, _describe(exc)


@bp.context_processor
def helpers():
    tz = user_zone(current_user)

    def local_time(value):
        if value is None:
            return "—"
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, tz=UTC_ZONE)
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")

    def seconds(value):
        if value is None:
            return "—"
        if value < 1:
            return f"{value * 1000:.0f} ms" if value >= 0.001 else "< 1 ms"
        if value < 60:
            return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
        minutes, secs = divmod(int(value), 60)
        if minutes < 60:
            return f"{minutes} min {secs} s"
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"

    def percent(value):
        return "—" if value is None else f"{value:.1%}"

    def static_available(filename):
        # htmx and app.js are optional: the page works (without live refresh) when absent.
        return os.path.exists(os.path.join(current_app.static_folder, filename))

    return {"tz_name": tz.key, "local_time": local_time, "seconds": seconds, "percent": percent,
            "static_available": static_available, "thresholds": stats}


# --- panel data ----------------------------------------------------------------

def live_context() -> dict:
    now = utcnow()
    connection, redis_error = _redis()
    ctx = {"now": now, "redis_error": redis_error,
           "refresh": current_app.config.get("OPS_LIVE_REFRESH_SECONDS", LIVE_REFRESH_SECONDS)}
    if connection is not None:
        try:
            ctx["queues"] = overview.queues(connection, now)
            ctx["workers"] = overview.workers(connection, now)
            ctx["running"] = overview.running_jobs(connection)
            health = stats.job_health(connection, now.timestamp())
            ctx["health"] = health
            ctx["jobs_chart"] = charts.jobs_per_hour(health.hours, user_zone(current_user).key)
        except Exception as exc:  # noqa: BLE001 - Redis can go away mid-render
            log.warning("ops dashboard: Redis read failed", exc_info=True)
            ctx["redis_error"] = _describe(exc)
    ctx["deliveries"], ctx["deliveries_error"] = _db_section(overview.deliveries_by_channel)
    if ctx["deliveries"] is not None:
        ctx["deliveries_chart"] = charts.delivery_success(ctx["deliveries"])
    ctx["outbox"], ctx["outbox_error"] = _db_section(overview.outbox_backlog, now)
    ctx["payouts"], ctx["payouts_error"] = _db_section(overview.recent_payouts)
    ctx["payout_check"], ctx["payout_check_error"] = _db_section(overview.payout_dedup_check)
    return ctx


def recurring_context(message: str | None = None, message_error: bool = False) -> dict:
    connection, redis_error = _redis()
    tz = current_app.config["SCHEDULER_TIMEZONE"]
    stale_after = current_app.config["SCHEDULER_HEARTBEAT_STALE_SECONDS"]
    scheduler = None
    try:
        jobs = overview.recurring_jobs(connection, tz, overdue_after=stale_after)
        if connection is not None:
            scheduler = overview.scheduler_state(connection, stale_after)
    except Exception as exc:  # noqa: BLE001
        redis_error = _describe(exc)
        jobs = overview.recurring_jobs(None, tz)
    return {"recurring": jobs, "recurring_redis_error": redis_error, "scheduler_tz": tz, "scheduler": scheduler,
            "recurring_message": message, "recurring_message_error": message_error,
            "recurring_refresh": current_app.config.get("OPS_RECURRING_REFRESH_SECONDS",
                                                        RECURRING_REFRESH_SECONDS)}


def failed_context(message: str | None = None, message_error: bool = False) -> dict:
    connection, redis_error = _redis()
    jobs, total = [], 0
    if connection is not None:
        try:
            jobs, total = overview.failed_jobs(connection)
        except Exception as exc:  # noqa: BLE001
            redis_error = _describe(exc)
    return {"failed": jobs, "failed_total": total, "failed_redis_error": redis_error,
            "failed_message": message, "failed_message_error": message_error}


def _approvals_data():
    now = utcnow()
    pending = payout_approvals.pending_payouts()
    for payout in pending:
        payout.overdue = payout_approvals.is_overdue(payout, now)
    return pending, payout_approvals.decided_payouts()


def approvals_context(message: str | None = None, message_error: bool = False) -> dict:
    """Payouts awaiting approval (flagged after 24 h), the threshold in force and the audit trail."""
    data, error = _db_section(_approvals_data)
    pending, decided = data if data is not None else (None, None)
    return {"approvals_settings": payout_approvals.approval_settings(), "approvals_pending": pending,
            "approvals_decided": decided, "approvals_error": error, "approvals_message": message,
            "approvals_message_error": message_error, "reason_max_length": payout_approvals.REASON_MAX_LENGTH}


def reminders_context() -> dict:
    reminders, error = _db_section(upcoming_reminders)
    return {"reminders": reminders or [], "reminders_error": error}


# --- pages and partials --------------------------------------------------------

@bp.get("")
@admin_required
def dashboard():
    ctx = {**live_context(), **approvals_context(), **mail_context(request.args.get("q")), **recurring_context(),
           **reminders_context(), **failed_context()}
    return render_template("ops/dashboard.html", **ctx)


@bp.get("/live")
@admin_required
def live():
    return render_template("ops/_live.html", **live_context())


@bp.get("/recurring")
@admin_required
def recurring():
    return render_template("ops/_recurring.html", **recurring_context())


@bp.get("/approvals")
@admin_required
def approvals():
    return render_template("ops/_approvals.html", **approvals_context())


@bp.get("/failed")
@admin_required
def failed():
    return render_template("ops/_failed.html", **failed_context())


# --- actions -------------------------------------------------------------------

def _after_action(panel: str, message: str, is_error: bool, status: int = 200):
    """HTMX: the refreshed panel with the message. Plain form: flash and go back."""
    if request.headers.get("HX-Request"):
        if panel == "failed":
            body = render_template("ops/_failed.html", **failed_context(message, is_error))
        else:
            body = render_template("ops/_recurring.html", **recurring_context(message, is_error))
        # A 4xx/5xx body is not swapped in by htmx by default, so answer 200 with the message.
        return body
    flash(message)
    return redirect(url_for("ops.dashboard", _anchor=f"ops-{panel}"))


def _act(panel: str, action, success_message):
    connection, redis_error = _redis()
    if connection is None:
        return _after_action(panel, f"Nothing was done: Redis is unreachable ({redis_error}).", True)
    try:
        outcome = action(connection)
    except ServiceError as exc:
        return _after_action(panel, exc.message, True)
    return _after_action(panel, success_message(outcome), False)


@bp.post("/failed/<job_id>/requeue")
@admin_required
def requeue_failed(job_id):
    return _act("failed", lambda c: actions.requeue_failed(c, job_id),
                lambda job: f"Job {job.id} ({job.func_name}) is back on the {job.origin} queue.")


@bp.post("/failed/<job_id>/delete")
@admin_required
def delete_failed(job_id):
    return _act("failed", lambda c: actions.delete_failed(c, job_id), lambda _: f"Job {job_id} was deleted.")


@bp.post("/failed/requeue-all")
@admin_required
def requeue_all_failed():
    def message(outcome):
        text = f"Requeued {outcome.requeued} failed job{'s' if outcome.requeued != 1 else ''}."
        if outcome.missing:
            text += f" {outcome.missing} no longer existed and were dropped from the list."
        return text

    return _act("failed", actions.requeue_all_failed, message)


@bp.post("/jobs/<name>/run")
@admin_required
def run_job(name):
    spec = schedule.JOBS_BY_NAME.get(name)
    if spec is None:
        abort(404, f"There is no job named {name!r}.")
    if spec.cron is None:
        # On-demand jobs need arguments (e.g. a tournament id): not a one-click button.
        return _after_action("recurring", f"{spec.name} needs {', '.join(spec.args)}: start it from the API "
                                          f"(POST /api/v1/jobs/{spec.name}/run) or the CLI.", True)
    try:
        # The same path as the jobs API and the scheduler: recorded as the job's latest run.
        job = start_job(name, trigger="dashboard")
    except ServiceError as exc:
        return _after_action("recurring", exc.message, True)
    except Exception as exc:  # noqa: BLE001 - redis raises several connection error types
        return _after_action("recurring", f"Could not enqueue {spec.name} (is Redis reachable?): "
                                          f"{_describe(exc)}", True)
    return _after_action("recurring", f"Started {spec.name}: job {job.id} is on the {job.origin} queue.", False)


def _decide_payout(decide, success_message):
    """Approve or reject from the dashboard: the same services as the API (economy/approvals.py)."""
    try:
        payout = decide(current_user._get_current_object())
        message, is_error = success_message(payout), False
    except ServiceError as exc:
        message, is_error = exc.message, True
    if request.headers.get("HX-Request"):
        return render_template("ops/_approvals.html", **approvals_context(message, is_error))
    flash(message)
    return redirect(url_for("ops.dashboard", _anchor="ops-approvals"))


@bp.post("/payouts/<int:payout_id>/approve")
@admin_required
def approve_payout(payout_id):
    return _decide_payout(lambda admin: payout_approvals.approve_payout(payout_id, admin),
                          lambda p: f"Payout {p.id} approved: {p.amount} coins paid to {p.user.username}.")


@bp.post("/payouts/<int:payout_id>/reject")
@admin_required
def reject_payout(payout_id):
    reason = request.form.get("reason", "")
    return _decide_payout(lambda admin: payout_approvals.reject_payout(payout_id, admin, reason),
                          lambda p: f"Payout {p.id} rejected; the captain of {p.team.name} is told the reason.")


# --- the email panel (/ops/mail): the seed's delivery rates (email bounce rate, complaint rate,
# Discord success; 24 hours, 7 days, a trend per day; read by delivery_rates) and the suppression
# list (notifications.suppression): search, lift.

MAIL_REFRESH_SECONDS = 60
SEARCH_MAX = 254


def mail_context(search: str | None = None, message: str | None = None, message_error: bool = False) -> dict:
    search = (search or "").strip()[:SEARCH_MAX]
    rates, rates_error = _db_section(delivery_rates.delivery_rates)
    ctx = {"rates": rates, "rates_error": rates_error, "mail_search": search,
           "mail_message": message, "mail_message_error": message_error, "rate_levels": delivery_rates,
           "mail_refresh": current_app.config.get("OPS_MAIL_REFRESH_SECONDS", MAIL_REFRESH_SECONDS)}
    if rates is not None:
        ctx["bounce_chart"] = charts.rate_per_day(
            rates.days, lambda d: d.bounce_rate, "Email bounce rate", delivery_rates.BOUNCE_RATE_ALERT, True,
            lambda d: f"{d.bounced} bounced of {d.email_sent} sent, {d.complained} complaints")
        ctx["discord_chart"] = charts.rate_per_day(
            rates.days, lambda d: d.discord_success, "Discord webhook success", delivery_rates.DISCORD_SUCCESS_OK,
            False, lambda d: f"{d.discord_sent} sent, {d.discord_failed} failed")
    ctx["suppressions"], ctx["suppressions_error"] = _db_section(suppression.list_suppressions, search or None)
    return ctx


@bp.get("/mail")
@admin_required
def mail():
    return render_template("ops/_mail.html", **mail_context(request.args.get("q")))


@bp.post("/suppressions/<int:suppression_id>/lift")
@admin_required
def lift_suppression(suppression_id):
    search = request.form.get("q")
    try:
        row = suppression.lift(suppression_id, f"admin:{current_user.id}")
        message, is_error = f"{row.email} gets email again.", False
    except ServiceError as exc:
        message, is_error = exc.message, True
    if request.headers.get("HX-Request"):
        return render_template("ops/_mail.html", **mail_context(search, message, is_error))
    flash(message)
    return redirect(url_for("ops.dashboard", q=search or None, _anchor="ops-mail"))
