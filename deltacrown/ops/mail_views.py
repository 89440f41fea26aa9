"""The dashboard's email panel (/ops/mail): the seed's delivery rates (email bounce rate, complaint
rate, Discord success; 24 hours, 7 days and a trend per day) and the suppression list (search,
lift). The rates are read by ops.delivery_rates; the list is notifications.suppression's."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import ServiceError
from ..notifications import suppression
from . import charts, delivery_rates
from .views import _db_section, admin_required, bp

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
