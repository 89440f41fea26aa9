"""WSGI entry point: `gunicorn app:app`, and FLASK_APP for the `flask` CLI."""
import sys

from deltacrown import ConfigError, create_app
from deltacrown.config import load_dotenv_file
from deltacrown.masking import mask_secrets

# Gunicorn's "app failed to load" exit code: its master then stops with that
# reason instead of rebooting workers forever; for the flask CLI it is just non-zero.
APP_LOAD_ERROR = 4


def _database_unreachable_hook(exc_type, exc, tb, _default=sys.excepthook):
    """A CLI command (`flask db upgrade`, ...) that cannot reach DATABASE_URL ends with
    one line naming it, not a traceback; every other error keeps its traceback."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        print(f"deltacrown: DATABASE_URL: cannot use the database: {mask_secrets(reason)}", file=sys.stderr)
        return
    _default(exc_type, exc, tb)


load_dotenv_file()
try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming the variable, not a traceback.
    print(f"deltacrown: configuration error: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
sys.excepthook = _database_unreachable_hook
