"""Errors that services raise and every caller (API, pages, CLI, jobs) understands.

Services never return half-done work: they raise one of these before writing,
and the caller turns it into a 4xx body, a message on the page or a CLI error.
"""
from __future__ import annotations


class ServiceError(Exception):
    """The base: its subclasses name their HTTP status and the body's machine-readable code
    in the class statement."""

    status = 400
    code = "bad_request"

    def __init_subclass__(cls, status: int, code: str, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.status = status
        cls.code = code

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class InvalidInput(ServiceError, status=422, code="invalid"):
    """A value the caller sent is refused; `fields` says which and why."""


class NotFound(ServiceError, status=404, code="not_found"):
    """What the caller named does not exist."""


class Forbidden(ServiceError, status=403, code="forbidden"):
    """The caller may not do this."""


class Conflict(ServiceError, status=409, code="conflict"):
    """The request clashes with the current state (a duplicate, a step out of order)."""
