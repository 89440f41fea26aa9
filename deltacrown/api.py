"""The JSON API's shared machinery.

- one flask-smorest Api per app (`init_app`); it validates requests against the declared
  marshmallow schemas and serves the OpenAPI document at /api/v1/openapi.json.
- Errors: every API error has the contract's body
  `{"error": {"code", "message", "fields"}}`; services raise `ServiceError`s.
- Auth: `Authorization: Bearer <token>` only, on every endpoint of every API blueprint.
  Session cookies are deliberately not accepted here (the API is exempt from CSRF, so it
  must not trust cookies).
- Routes: `bp.operation(method, path, body=, query=, status=, response=, admin=, links=)`
  declares one operation, its schemas, who may call it and (`links`, built with `link`) which
  operations take an id from its answer, so clients and tools can chain calls.
- Lists: newest first, keyset pagination on the id (`?cursor=`, `?limit=`).
"""
from __future__ import annotations

import base64
import binascii
import functools

from flask import current_app, g, jsonify, request
from flask_smorest import Api
from flask_smorest import Blueprint as _SmorestBlueprint
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .errors import Forbidden, InvalidInput, ServiceError
from .extensions import csrf, db

API_PREFIX = "/api/v1"

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid", 429: "rate_limited"}


class Unauthorized(ServiceError, status=401, code="unauthorized"):
    """No valid Bearer token came with the request."""


def error_response(status: int, code: str, message: str, fields_: dict | None = None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "fields": fields_ or {}}})
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def _readable(msgs) -> str:
    """One line a person can act on, from marshmallow's messages for one field: a list of
    strings, or for nested fields a dict down to them ({"invite_sent": {"value": {0: [..]}}}
    -> "invite_sent: unknown channel 'x'"; marshmallow's "key"/"value"/index levels dropped)."""
    if isinstance(msgs, str):
        return msgs
    if isinstance(msgs, list):
        return "; ".join(_readable(m) for m in msgs)
    if isinstance(msgs, dict):
        parts = []
        for key, inner in msgs.items():
            text = _readable(inner)
            named = isinstance(key, str) and key not in ("key", "value", "_schema")
            parts.append(f"{key}: {text}" if named else text)
        return "; ".join(parts)
    return str(msgs)


def _flatten_webargs(messages) -> dict:
    """webargs reports {"json": {"field": ["msg"]}}; the contract wants {"field": "msg"}."""
    flat = {}
    for location, errs in (messages or {}).items():
        if isinstance(errs, dict):
            for name, msgs in errs.items():
                flat[str(name)] = _readable(msgs)
        else:
            flat[location] = _readable(errs)
    return flat


class ErrorDetailSchema(Schema):
    code = fields.String(metadata={"description": "machine-readable, e.g. not_found, invalid, conflict"})
    message = fields.String(metadata={"description": "what went wrong, for a person"})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "field name -> what is wrong with it"})


class ErrorSchema(Schema):
    """The contract's error body, so the OpenAPI document describes what is really sent."""

    error = fields.Nested(ErrorDetailSchema)


class DeltaCrownApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        if not request.path.startswith(API_PREFIX):
            return error  # pages keep Flask's own error pages
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        fields_ = _flatten_webargs(data.get("messages")) if "messages" in data else {}
        if status == 422 and fields_:
            message = "Invalid values: " + "; ".join(f"{k}: {v}" for k, v in fields_.items())
        elif status == 400 and fields_:
            message = "Malformed request: " + "; ".join(f"{v}" for v in fields_.values())
        else:
            message = data.get("message") or error.description or error.name
        if status >= 500:
            message = "Internal error"
        headers = dict(data.get("headers") or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)  # as HTTP requires of a 405
        return error_response(status, _HTTP_CODES.get(status, "error"), message, fields_, headers=headers)


def _expression(value: str) -> str:
    return value if value.startswith("$") else f"$response.body#/{value}"


def link(operation: str, description: str = "", *, body: dict | None = None, **parameters: str) -> dict:
    """An OpenAPI link from an answer to `operation` ("POST /teams/{team_id}/invites", a path
    under /api/v1): each parameter is a field of the answer's body (`team_id="id"`,
    `notification_id="items/0/id"`) or, given as a runtime expression starting with "$", that
    (`team_id="$request.path.team_id"`). `body`: fields of the target's JSON body taken the
    same way (`body={"captain_id": "id"}`); the target's other fields are the caller's."""
    method, _, path = operation.partition(" ")
    pointer = (API_PREFIX + path).replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
    doc = {"operationRef": f"#/paths/{pointer}/{method.lower()}"}
    if parameters:
        doc["parameters"] = {name: _expression(value) for name, value in parameters.items()}
    if body:
        doc["requestBody"] = {name: _expression(value) for name, value in body.items()}
    if description:
        doc["description"] = description
    return doc


def id_links(parameter: str, **operations: str) -> dict:
    """{name: link(operation, parameter="id")}: the operations that take the answer's `id`
    as their `parameter` (a created team's id as `team_id`), in the order given."""
    return {name: link(operation, **{parameter: "id"}) for name, operation in operations.items()}


class ApiBlueprint(_SmorestBlueprint):
    def operation(self, method: str, rule: str, *, body=None, body_required: bool = True, query=None,
                  status: int = 200, response=None, admin: bool = False, links: dict | None = None,
                  raw_body: tuple[str, int] | None = None):
        """One API operation, declared in one place: `method rule`; the JSON `body` and/or
        `query` schema it validates (the view gets the loaded dict first); the `response`
        schema sent with `status`. `admin`: admins only, refused (403) before the body is
        validated. `links`: {name: link(...)}, the operations that use this answer's ids
        (documented on the `status` response).

        `raw_body`: (media type, most bytes), e.g. ("message/rfc822", 1 MiB): a body of that
        type is accepted besides the JSON one and reaches the view unparsed, as the keyword
        `raw` (bytes; the JSON argument is None then). Refused when empty (422) or larger
        (413); documented as a second content type of the request body."""
        def declare(view):
            view = self.response(status, response)(view)
            if links:
                view = self.doc(responses={status: {"links": links}})(view)
            unparsed = view
            if body is not None:
                view = self.arguments(body, required=body_required)(view)
            if raw_body is not None:
                view = _accept_raw_body(self, view, unparsed, *raw_body)
            if query is not None:
                view = self.arguments(query, location="query")(view)
            if admin:
                view = _admin_only(view)
            return self.route(rule, methods=[method])(view)

        return declare


def _accept_raw_body(blueprint: ApiBlueprint, parsed_view, unparsed_view, media_type: str, max_bytes: int):
    @functools.wraps(parsed_view)
    def view(*args, **kwargs):
        if request.mimetype != media_type:
            return parsed_view(*args, **kwargs)
        if request.content_length is not None and request.content_length > max_bytes:
            raise TooLarge(f"The {media_type} body may be at most {max_bytes} bytes.")
        raw = request.get_data(cache=False)
        if len(raw) > max_bytes:
            raise TooLarge(f"The {media_type} body may be at most {max_bytes} bytes.")
        if not raw.strip():
            raise InvalidInput(f"The {media_type} body is empty.", fields={"body": "empty"})
        return unparsed_view(None, *args, raw=raw, **kwargs)

    view._raw_body_type = media_type  # _require_json_body lets it through
    return blueprint.doc(requestBody={"content": {media_type: {
        "schema": {"type": "string", "format": "binary", "maxLength": max_bytes}}}})(view)


class TooLarge(ServiceError, status=413, code="too_large"):
    """The body is larger than the operation takes."""


def Blueprint(name: str, import_name: str, description: str = "", **kwargs) -> ApiBlueprint:
    """An API blueprint under /api/v1 whose every endpoint needs a valid Bearer token,
    checked before the body is validated (a caller without a token gets 401, not 422)."""
    blueprint = ApiBlueprint(name, import_name, url_prefix=API_PREFIX, description=description, **kwargs)

    @blueprint.before_request
    def _authenticate():
        api_user()  # a 401 without a valid token; returns nothing, so the view runs

    return blueprint


def _handle_service_error(exc: ServiceError):
    return error_response(exc.status, exc.code, exc.message, exc.fields)


# --- auth ------------------------------------------------------------------

def set_token_authenticator(app, authenticate) -> None:
    """Who a Bearer token belongs to: `authenticate(token) -> user or None`, registered by
    the accounts part at start (users live above this module)."""
    app.extensions["deltacrown_api_authenticate"] = authenticate


def api_user():
    """The user behind the Bearer token, or a 401."""
    if "api_user" in g:
        return g.api_user
    authenticate = current_app.extensions.get("deltacrown_api_authenticate")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = authenticate(token.strip()) if authenticate and scheme.lower() == "bearer" else None
    if user is None:
        raise Unauthorized("Send a valid API token: 'Authorization: Bearer <token>'.")
    g.api_user = user
    return user


def require_admin():
    user = api_user()
    if not user.is_admin:
        raise Forbidden("Only admins may do this.")
    return user


def _admin_only(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        require_admin()
        return view(*args, **kwargs)

    return wrapper


# --- lists -----------------------------------------------------------------

class ListArgsSchema(Schema):
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page"})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API gave out", fields={"cursor": "invalid cursor"}) from None
    return value


def keyset_page(select_stmt, id_column, cursor: str | None, limit: int):
    """Newest first by id: rows with id < cursor. Returns (rows, next_cursor).

    One statement whatever the page number (no OFFSET scan).
    """
    before = decode_cursor(cursor)
    if before is not None:
        select_stmt = select_stmt.where(id_column < before)
    rows = list(db.session.scalars(select_stmt.order_by(id_column.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _require_json_body():
    """A body that is not JSON is refused as such (415), instead of being read as "no
    fields sent" and answered with a misleading 422 about missing fields."""
    if (not request.path.startswith(API_PREFIX + "/") or request.method not in _BODY_METHODS
            or request.routing_exception is not None):  # unknown route or method: its 404/405 comes first
        return None
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding") == "chunked"
    view = current_app.view_functions.get(request.endpoint)
    if has_body and request.mimetype and request.mimetype == getattr(view, "_raw_body_type", None):
        return None  # the operation takes this type too (ApiBlueprint.operation's raw_body)
    if has_body and not request.is_json:
        return error_response(415, "unsupported_media_type",
                              "Send the body as JSON with 'Content-Type: application/json'.")
    return None


def init_app(app):
    app.config.setdefault("API_TITLE", "DeltaCrown automation & notifications")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    # One Api per app (tests build many apps); blueprints below are shared objects.
    api = DeltaCrownApi(app, spec_kwargs={
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    })
    app.extensions["deltacrown_api"] = api
    app.register_error_handler(ServiceError, _handle_service_error)
    app.before_request(_require_json_body)


def register_blueprint(app, blueprint):
    """Register an API blueprint with the spec; exempt from CSRF (Bearer auth only)."""
    csrf.exempt(blueprint)
    app.extensions["deltacrown_api"].register_blueprint(blueprint)
