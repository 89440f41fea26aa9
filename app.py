"""WSGI entry point: `gunicorn app:app`, and FLASK_APP for the `flask` CLI."""
import sys

from deltacrown import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming the variable, not a traceback.
    sys.exit(f"deltacrown: configuration error: {exc}")
