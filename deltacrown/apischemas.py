"""Marshmallow building blocks shared by the JSON API blueprints.

Every value a client can send is bounded here, so that nothing a client sends can
reach the database in a shape it refuses (NUL bytes and over-long strings on
PostgreSQL, integers beyond 32 bits, dates that overflow when turned into UTC):
those would be 500s instead of 422s.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate

from .api import ListArgsSchema
from .dbutil import MAX_DB_ID
from .links import same_site_path

# Path converter for ids: an id outside this range cannot exist, so it is a 404.
ID = f"int(min=1, max={MAX_DB_ID})"


def _no_nul(value):
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError("must not contain NUL characters")


# The same rules as patterns, so the OpenAPI document states them too (validation stays with
# the validators, whose messages the API answers with).
NO_NUL = r"^[^\x00]*$"
# White space as str.strip() sees it (the services strip before checking for blank), spelt
# out: regex engines disagree on what \s covers.
_SPACE = "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x3001)) if c.isspace())
NOT_BLANK = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"  # and something besides white space


def _with_metadata(kwargs: dict, **doc) -> dict:
    return {**kwargs, "metadata": {**doc, **kwargs.get("metadata", {})}}


def Text(max_length: int, min_length: int = 1, *, blank: bool = True, **kwargs) -> fields.String:
    """A string field with a length range and no NUL characters; `blank=False`: the service
    also refuses white space only (said here so the OpenAPI document says it)."""
    return fields.String(validate=[validate.Length(min=min_length, max=max_length), _no_nul],
                         **_with_metadata(kwargs, pattern=NO_NUL if blank else NOT_BLANK))


def _link(value):
    # Shown as a link in the center, emails and Discord: a path on this site only (never
    # another host, javascript: or data:, nor a path a browser would read as another host).
    if value is not None and same_site_path(value) is None:
        raise ValidationError("must be a path on this site like /tournaments/3 (no spaces, control characters "
                              "or backslashes)")


# What the document can say of `_link`: a path ("/", not "//"), without backslashes, white
# space or control characters (the check itself also refuses other invisible characters).
LINK_PATTERN = r"^/(?![/\\])[^\\\x00-\x20\x7f-\x9f\s]*$"


def Link(**kwargs) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=500), _no_nul, _link],
                         **_with_metadata(kwargs, pattern=LINK_PATTERN,
                                          description="a path on this site, like /tournaments/3"))


def IdField(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_DB_ID), **kwargs)


def _sane_year(value: datetime):
    if not 1970 <= value.astimezone(timezone.utc).year <= 9000:
        raise ValidationError("must be between the years 1970 and 9000")


class _AwareDateTime(fields.AwareDateTime):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            result = super()._deserialize(value, attr, data, **kwargs)
            result.astimezone(timezone.utc)  # years 1 and 9999 overflow when converted
        except OverflowError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None
        return result


# The year range of `_sane_year` as the document can say it (a time's own year; in UTC the
# edges of the range can fall one year either side).
SANE_YEAR = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9000)-"


def When(**kwargs) -> fields.AwareDateTime:
    """An ISO 8601 time with an offset (naive times are refused, not guessed at)."""
    description = kwargs.get("metadata", {}).get("description")
    rule = "with a UTC offset, between the years 1970 and 9000"
    metadata = {**kwargs.pop("metadata", {}), "pattern": SANE_YEAR,
                "description": f"{description}; {rule}" if description else rule}
    return _AwareDateTime(format="iso", validate=_sane_year, metadata=metadata, **kwargs)


def Out(**kwargs) -> fields.DateTime:
    """A stored UTC time, written as ISO 8601 with its offset."""
    return fields.DateTime(format="iso", **kwargs)


class ListSchema(ListArgsSchema):
    """?cursor=&limit= (the cursor is bounded like any other string)."""

    cursor = fields.String(load_default=None, validate=[validate.Length(max=64), _no_nul],
                           metadata={"description": "next_cursor of the previous page (only a cursor this API gave "
                                                    "out is accepted)", "pattern": r"^[A-Za-z0-9_-]*$"})


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


class EmptySchema(Schema):
    pass
