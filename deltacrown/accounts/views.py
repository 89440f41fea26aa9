"""Browser login and logout (Flask-Login sessions)."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from ..extensions import db, limiter, login_manager
from ..links import same_site_path
from .models import User
from .services import authenticate_password, end_all_sessions

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


@login_manager.user_loader
def load_user(user_id: str):
    """The session's user, unless the session was revoked (its version is not the user's now).

    Checked on every request. A session from before versions existed holds only the id:
    valid while the user never revoked any session."""
    ident, _, version = user_id.partition(":")
    if not ident.isdigit() or (version and not version.isdigit()):
        return None
    user = db.session.get(User, int(ident))
    if user is None or user.session_version != int(version or 1):
        return None
    return user


def _safe_next(target: str | None) -> str | None:
    # Only same-site paths: never an open redirect to another host.
    return same_site_path(target)


def _attempted_username() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().lower()


def _failed_login(response) -> bool:
    # Only failed attempts count: a player who logs in correctly is never slowed down.
    return response.status_code == 401


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"], key_func=get_remote_address,
               methods=["POST"], deduct_when=_failed_login, scope="login-ip")
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_USERNAME"], key_func=_attempted_username,
               methods=["POST"], deduct_when=_failed_login, scope="login-username")
def login():
    if current_user.is_authenticated:
        return redirect(url_for("auth.home"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = authenticate_password(form.username.data, form.password.data)
        if user:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("auth.home"))
        error = "Wrong username or password."
    status = 401 if error else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.errorhandler(429)
def too_many_attempts(error):
    # Only the login route is limited; the message says how long the pause lasts.
    limit = getattr(error, "limit", None)
    window = limit.limit.get_expiry() if limit is not None else 60
    return render_template("auth/too_many_attempts.html", window=window), 429


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():
    """End every session of this user, on every device, this one included."""
    end_all_sessions(current_user._get_current_object())
    logout_user()
    flash("You are logged out everywhere. Log in again on the devices you use.")
    return redirect(url_for("auth.login"))


@bp.route("/")
@login_required
def home():
    return render_template("home.html")
