"""Database helpers every part's services and models share.

`get_or_404` looks a row up by id; `commit`/`flush` turn a unique-constraint clash
into a 409; `transition` changes a row's status only if it still has the expected
one; `sql_in` spells the CHECK constraint that keeps a column among fixed values;
`insert_ignoring_duplicates` is the bulk INSERT .. ON CONFLICT DO NOTHING of the fan-out;
`insert_or_update` writes one row whose unique key may be taken already (a race is one statement);
`ping_connections_idle_for` checks a pooled connection before use only if it sat idle a while.
"""
from __future__ import annotations

import json
import time

from sqlalchemy import String, bindparam, cast, event, func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError, InvalidatePoolError

from .errors import Conflict, NotFound
from .extensions import db

# Ids are 32-bit integer columns: a larger id cannot exist (and PostgreSQL refuses to
# compare with it), so it is "not found" or a validation error, never a database error.
MAX_DB_ID = 2**31 - 1


def is_db_id(ident) -> bool:
    """Whether an id column could hold this (a URL or a request body may carry any number)."""
    return isinstance(ident, int) and 0 < ident <= MAX_DB_ID


def get_row(model, ident):
    """The row with this id, or None (also for an id no id column can hold)."""
    return db.session.get(model, ident) if is_db_id(ident) else None


def not_found(label: str, ident, field: str | None = None) -> NotFound:
    """NotFound for the `label` with this id; with `field`, naming the request field that held it."""
    return NotFound(f"{label} {ident} not found", fields={field: f"no {label.lower()} {ident}"} if field else None)


def get_or_404(model, ident, what: str | None = None, field: str | None = None):
    """The row with this id, or NotFound naming it as `what` (the model's name by default)."""
    obj = get_row(model, ident)
    if obj is None:
        raise not_found(what or model.__name__, ident, field)
    return obj


def commit(flush_only: bool = False, keep_loaded: bool = False) -> None:
    """Commit (or flush); a unique constraint that fires here means a concurrent request
    (or a spelling our pre-check could not see) made the same change first: 409, nothing kept.

    `keep_loaded`: the rows stay as this transaction left them instead of being read again
    on their next use, for a caller that only answers with what it has just written (a
    hot API write: the read after the commit was a statement and a transaction of its own)."""
    session = db.session()
    session.expire_on_commit = not keep_loaded
    try:
        session.flush() if flush_only else session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("That conflicts with an existing record or a change made at the same time.") from None
    finally:
        session.expire_on_commit = True


def flush() -> None:
    commit(flush_only=True)


def transition(obj, expected_status: str, conflict_message: str, **values) -> None:
    """Change `obj` only if it still has `expected_status`, in one conditional UPDATE: of two
    concurrent requests (two web processes) exactly one wins, the other gets a 409."""
    model = type(obj)
    result = db.session.execute(update(model).where(model.id == obj.id, model.status == expected_status)
                                .values(**values).execution_options(synchronize_session="fetch"))
    if result.rowcount != 1:
        db.session.rollback()
        raise Conflict(conflict_message)


def sql_in(column: str, values) -> str:
    """CHECK constraint text: `column` holds one of `values`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def insert_or_update(table, values: dict, key: list[str], update: list[str]):
    """INSERT .. ON CONFLICT (`key`) DO UPDATE SET `update` from `values`: the statement (add a
    RETURNING and execute it). Two transactions writing the same key at once leave one row."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(values)
    return stmt.on_conflict_do_update(index_elements=key, set_={name: stmt.excluded[name] for name in update})


def insert_ignoring_duplicates(table, rows: list[dict], returning=()):
    """Bulk INSERT .. ON CONFLICT DO NOTHING; returns the rows actually inserted (`returning`)."""
    if not rows:
        return []
    varying, constant = _split_columns(rows)
    if db.session.get_bind().dialect.name == "postgresql":
        stmt, params = _unnest_insert(table, rows, varying, constant), None
    elif _json_safe(rows, varying):  # SQLite: the rows as one JSON parameter
        stmt, params = _json_each_insert(table, rows, varying, constant), None
    else:  # SQLite, with dates or JSON differing per row: SQLAlchemy's multi-row VALUES
        stmt, params = sqlite.insert(table).on_conflict_do_nothing(), rows
    if returning:
        return db.session.execute(stmt.returning(*returning), params).all()
    db.session.execute(stmt, params)
    return []


def _split_columns(rows: list[dict]) -> tuple[list[str], dict]:
    """(names of the columns whose value differs between rows, {column: value shared by all})."""
    varying, constant = [], {}
    first = rows[0]
    for name in first:
        value = first[name]
        if all(row[name] is value or row[name] == value for row in rows):
            if value is not None:  # an omitted column is NULL
                constant[name] = value
        else:
            varying.append(name)
    return varying, constant


def _json_safe(rows: list[dict], varying: list[str]) -> bool:
    """Whether every value that differs between rows is a plain int, str or None (it can
    travel in JSON and be stored as it is, with no type processing)."""
    return all(type(row[name]) in (int, str, type(None)) for name in varying for row in rows)


def _json_each_insert(table, rows: list[dict], varying: list[str], constant: dict):
    """SQLite: INSERT .. SELECT FROM json_each(one JSON array of rows), for any number of rows.

    SQLAlchemy's multi-row VALUES binds and type-processes every value of every row in
    Python: most of an in-app fan-out's time on SQLite (bench/FINDINGS.md). Here the values
    that differ between rows travel as one JSON text, read by SQLite's own json_each; values
    shared by every row as one ordinary (type-processed) parameter each.
    """
    columns = table.c
    source = func.json_each(bindparam(None, json.dumps([[row[name] for name in varying] for row in rows]),
                                      type_=String)).table_valued("value")
    selected = [func.json_extract(source.c.value, f"$[{i}]").label(name) for i, name in enumerate(varying)]
    # No CAST: SQLite would give a type it does not know (DATETIME, JSON) numeric affinity.
    selected += [bindparam(None, value, type_=columns[name].type).label(name) for name, value in constant.items()]
    # "WHERE true": SQLite's documented fix for the INSERT .. SELECT .. ON CONFLICT parsing ambiguity.
    query = select(*selected).select_from(source).where(true())
    return sqlite.insert(table).from_select(varying + list(constant), query, include_defaults=False) \
        .on_conflict_do_nothing()


def _unnest_insert(table, rows: list[dict], varying: list[str], constant: dict):
    """PostgreSQL: INSERT .. SELECT FROM unnest(arrays), one short statement for any number of rows.

    SQLAlchemy's multi-row VALUES for RETURNING puts a placeholder per value in the SQL, and
    psycopg parses such long statements afresh each time (it caches none past 4 KB), which
    dominated a fan-out's time (BENCHMARKS.md). Here values that differ between rows travel as one array
    per column, values shared by every row (type, title, payload, ...) as one parameter.
    """
    columns = table.c
    if varying:
        arrays = [cast(bindparam(None, [row[name] for row in rows], type_=ARRAY(columns[name].type)),
                       ARRAY(columns[name].type)) for name in varying]
        source = func.unnest(*arrays).table_valued(*varying).render_derived()
        selected = [source.c[name] for name in varying]
    else:
        source, selected = None, []
    selected += [cast(bindparam(None, value, type_=columns[name].type), columns[name].type)
                 for name, value in constant.items()]
    query = select(*selected)
    if source is None:
        query = query.select_from(select(func.generate_series(1, len(rows))).subquery())
    else:
        query = query.select_from(source)
    return postgresql.insert(table).from_select(varying + list(constant), query, include_defaults=False) \
        .on_conflict_do_nothing()


_RETURNED_AT = "deltacrown_returned_at"  # pool entry info: when the connection was last given back


def ping_connections_idle_for(engine, seconds: float) -> None:
    """Before a pooled connection is used, ask the server whether it is still there (a `SELECT 1`)
    only if it sat idle for more than `seconds`. A dead one is replaced before the request or job
    sees it, and so is every other connection of the pool made before it (InvalidatePoolError
    raised at checkout, as SQLAlchemy's own pre-ping does: one dead connection means a restart).

    A connection dropped while idle (a database restart, an idle timeout in between) is what the
    ping is for, and such a connection has been idle a while. SQLAlchemy's `pool_pre_ping` pinged
    at every checkout: a round trip more for each request and each of a job's transactions, and
    under load connections go back and out again within milliseconds. A connection that dies
    between two uses closer than `seconds` apart fails that one use, and SQLAlchemy then renews
    every pooled connection of the process (its own handling of a disconnect)."""

    def returned(_dbapi_connection, entry, *_):
        entry.info[_RETURNED_AT] = time.monotonic()

    def checkout(dbapi_connection, entry, _proxy):
        returned_at = entry.info.get(_RETURNED_AT)
        if returned_at is not None and time.monotonic() - returned_at <= seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(str(exc)) from exc
            raise

    event.listen(engine, "connect", returned)  # a new connection was just made: no ping needed
    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", checkout)
