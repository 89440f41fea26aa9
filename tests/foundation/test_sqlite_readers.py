"""On SQLite, a player reading a page does not hold up a worker's write.

In SQLite's default rollback journal a commit waits until no connection is reading, so
every poll of the notification center delayed the worker's next commit (and a long read
made it fail with "database is locked"). In WAL mode a reader keeps its snapshot and the
writer commits at once."""
import sqlite3

from sqlalchemy import func, select

from deltacrown.accounts.models import User
from deltacrown.accounts.services import create_user
from deltacrown.extensions import db
from tests.conftest import make_test_app


def test_a_write_commits_while_another_process_is_reading(tmp_path, redis_url):
    path = tmp_path / "shared.sqlite"
    # A short busy timeout: a commit that waits for the reader fails in 0.2 s, not 5 s.
    app = make_test_app(f"sqlite:///{path}", redis_url,
                        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "connect_args": {"timeout": 0.2}})
    with app.app_context():
        db.create_all()
        create_user("anna", "anna@example.com")

    reader = sqlite3.connect(path, isolation_level=None)  # another process's page, mid-read
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (1,)

        with app.app_context():
            create_user("boris", "boris@example.com")  # the worker's write, during that read
            assert db.session.scalar(select(func.count()).select_from(User)) == 2

        # The reader finishes on the snapshot it started with; its next read sees the write.
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (1,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (2,)
    finally:
        reader.close()
        with app.app_context():
            db.engine.dispose()
