"""Migrations: `flask db upgrade` / `flask db downgrade base` on empty SQLite and
PostgreSQL databases, and no drift between the models and the migrations."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import deltacrown.models  # noqa: F401  (every table on the metadata)
from deltacrown.config import normalize_database_url
from deltacrown.extensions import db
from tests.support.databases import scratch_postgres_database
from tests.support.processes import PYTHON, process_env, run_process

MODEL_TABLES = set(db.metadata.tables)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path):
    """An empty database of this test's own (a scratch PostgreSQL database, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite'}"
        return
    with scratch_postgres_database("dc_migrate") as url:
        yield url


def flask_db(database_url, *args):
    result = run_process([PYTHON, "-m", "flask", "db", *args], env=process_env(DATABASE_URL=database_url),
                         timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tables(database_url):
    engine = create_engine(normalize_database_url(database_url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_drift(database_url):
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "compare_server_default": False})
            return compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(empty_database):
    flask_db(empty_database, "upgrade")
    assert tables(empty_database) == MODEL_TABLES | {"alembic_version"}
    flask_db(empty_database, "downgrade", "base")
    assert tables(empty_database) <= {"alembic_version"}
    # and back up again: downgrade left nothing behind that blocks a new upgrade
    flask_db(empty_database, "upgrade")
    assert tables(empty_database) == MODEL_TABLES | {"alembic_version"}


def test_models_and_migrations_agree(empty_database):
    """Autogenerate against the migrated schema finds nothing: a model change
    without its migration (or the other way round) fails here."""
    flask_db(empty_database, "upgrade")
    assert schema_drift(empty_database) == []


def test_drift_check_notices_a_model_change_without_migration(tmp_path):
    """The check above has teeth: a column added to a model but not to a migration is a diff."""
    from sqlalchemy import Column, MetaData, String

    url = f"sqlite:///{tmp_path / 'drift.sqlite'}"
    flask_db(url, "upgrade")
    changed = MetaData()
    for table in db.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["teams"].append_column(Column("motto", String(100)))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), changed)
    finally:
        engine.dispose()
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "motto")]


def test_upgrade_merges_the_mutes_a_race_doubled_keeping_the_latest_end(empty_database):
    """0014's unique indexes need one mute per player and subject: rows doubled by racing
    requests become the oldest row, muted as long as the longest of them."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    flask_db(empty_database, "upgrade", "0013")
    t = db.metadata.tables
    soon = datetime(2030, 1, 1, tzinfo=timezone.utc)
    engine = create_engine(normalize_database_url(empty_database))
    try:
        with engine.begin() as conn:
            conn.execute(t["users"].insert(), [{"id": n, "username": f"u{n}", "email": f"u{n}@example.com",
                                                "password_hash": "x"} for n in (1, 2)])
            conn.execute(t["teams"].insert(), [{"id": 1, "name": "Red", "captain_id": 1}])
            conn.execute(t["tournaments"].insert(), [{"id": 1, "name": "Cup", "starts_at": soon}])
            conn.execute(t["mutes"].insert(), [
                {"id": 1, "user_id": 1, "team_id": 1, "tournament_id": None, "until": soon},
                {"id": 2, "user_id": 1, "team_id": 1, "tournament_id": None, "until": None},  # until unmuted wins
                {"id": 3, "user_id": 1, "team_id": None, "tournament_id": 1, "until": soon},
                {"id": 4, "user_id": 1, "team_id": None, "tournament_id": 1, "until": soon + timedelta(days=1)},
                {"id": 5, "user_id": 2, "team_id": 1, "tournament_id": None, "until": soon},  # someone else's
            ])
        flask_db(empty_database, "upgrade")
        with engine.connect() as conn:
            rows = conn.execute(select(t["mutes"].c.id, t["mutes"].c.until).order_by("id")).all()
    finally:
        engine.dispose()
    ends = {id_: until if until is None or until.tzinfo else until.replace(tzinfo=timezone.utc)
            for id_, until in rows}
    assert ends == {1: None, 3: soon + timedelta(days=1), 5: soon}
