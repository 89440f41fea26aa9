"""Creating users and checking who they are (password or API token)."""
from __future__ import annotations

import functools
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from marshmallow import ValidationError as _MmValidationError
from marshmallow import validate
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import Conflict, InvalidInput
from ..extensions import db
from ..outbox.services import emit
from ..signals import user_created
from .models import User, hash_token

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
_username = validate.Regexp(USERNAME_PATTERN, error="3 to 32 letters, digits, '.', '_' or '-'")
# The zones `is_valid_timezone` knows by name (for the API's document).
TIMEZONES = sorted(available_timezones())
_email = validate.Email(error="not a valid email address")


def is_valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def create_user(username: str, email: str, password: str | None = None, is_admin: bool = False,
                timezone: str = "UTC") -> tuple[User, str, str]:
    """Create a user (and, through `user_created`, their default preferences). Returns
    (user, api_token, password).

    The token is returned once and only its hash is kept. A password is generated
    when none is given. Nothing is written if any value is unusable.
    """
    errors = {}
    for field, validator, value in (("username", _username, username), ("email", _email, email)):
        try:
            validator(value or "")
        except _MmValidationError as exc:
            errors[field] = exc.messages[0] if isinstance(exc.messages, list) else str(exc.messages)
    if password is not None and len(password) < 8:
        errors["password"] = "at least 8 characters"
    if not is_valid_timezone(timezone or ""):
        errors["timezone"] = f"unknown IANA time zone {timezone!r}"
    if errors:
        raise InvalidInput("; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)
    # Valid values that clash with existing users: a conflict with current state (409, like a
    # taken team name), not invalid input.
    taken = {}
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        taken["username"] = f"username {username!r} is taken"
    if db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        taken["email"] = f"email {email!r} is already registered"
    if taken:
        raise Conflict("; ".join(f"{k}: {v}" for k, v in taken.items()), fields=taken)

    password = password or secrets.token_urlsafe(12)
    token = secrets.token_urlsafe(32)
    user = User(username=username, email=email.lower(), password_hash=generate_password_hash(password),
                is_admin=is_admin, timezone=timezone, api_token_hash=hash_token(token))
    db.session.add(user)
    try:
        db.session.flush()
        user_created.send(user)  # other parts add their rows for the user (preferences)
        db.session.commit()
    except IntegrityError:
        # Lost a race with a concurrent create of the same name: the constraint decides.
        db.session.rollback()
        raise Conflict("username or email is taken",
                           fields={"username": "taken or email already registered"}) from None
    return user, token, password


@functools.lru_cache(maxsize=1)
def _dummy_password_hash() -> str:
    # Made like every stored hash (same method and cost), for a random password nobody knows.
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate_password(username: str, password: str) -> User | None:
    """The user, if the password is theirs. An unknown username costs the same hash check as
    a wrong password (against a dummy hash), so timing does not tell which usernames exist."""
    dummy = _dummy_password_hash()  # made on the first login of the process, whoever logs in
    user = db.session.scalar(select(User).where(func.lower(User.username) == (username or "").lower()))
    matches = check_password_hash(user.password_hash if user else dummy, password or "")
    return user if user and matches else None


def authenticate_token(token: str) -> User | None:
    if not token:
        return None
    return db.session.scalar(_user_by_token_hash(), {"token_hash": hash_token(token)})


@functools.cache
def _user_by_token_hash():
    """Built once, with a bound parameter: the first statement of every API request, whose
    building cost a fifth of the lookup."""
    return select(User).where(User.api_token_hash == bindparam("token_hash"))


def find_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.username) == (username or "").lower()))


def _end_sessions(user: User) -> None:
    # In SQL, so two changes at once both count; every session with the old version ends.
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_version=User.session_version + 1))


def end_all_sessions(user: User) -> None:
    """Log the user out of every browser session ("log out everywhere")."""
    _end_sessions(user)
    db.session.commit()
    db.session.refresh(user)


def rotate_api_token(user: User) -> str:
    """A new API token (returned once; only its hash is kept). The old one stops working at
    once, and the user's browser sessions end (a token change is a credential change). The
    user is told (`api_token_replaced`, a critical notification: in-app whatever they chose)."""
    token = secrets.token_urlsafe(32)
    user.api_token_hash = hash_token(token)
    _end_sessions(user)
    emit("api_token_replaced", user_id=user.id)
    db.session.commit()
    db.session.refresh(user)
    return token


def set_password(user: User, password: str) -> None:
    """Change the password; every browser session of the user ends."""
    if password is None or len(password) < 8:
        raise InvalidInput("password: at least 8 characters", fields={"password": "at least 8 characters"})
    user.password_hash = generate_password_hash(password)
    _end_sessions(user)
    db.session.commit()
    db.session.refresh(user)


def change_email(user: User, new_email: str, commit: bool = True) -> str:
    """Give `user` a new email address (validated, unique, stored lower case). Returns the old
    one. `commit=False` leaves the commit to the caller (to commit other rows with it)."""
    new_email = (new_email or "").strip()
    try:
        _email(new_email)
    except _MmValidationError:
        raise InvalidInput("email: not a valid email address", fields={"email": "not a valid email address"}) from None
    if len(new_email) > 254:
        raise InvalidInput("email: at most 254 characters", fields={"email": "at most 254 characters"})
    old = user.email
    if new_email.lower() == (old or "").lower():
        return old
    if db.session.scalar(select(User.id).where(func.lower(User.email) == new_email.lower(), User.id != user.id)):
        raise Conflict(f"email {new_email!r} is already registered", fields={"email": "already registered"})
    user.email = new_email.lower()
    try:
        db.session.flush()
        if commit:
            db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"email {new_email!r} is already registered", fields={"email": "already registered"}) from None
    return old
