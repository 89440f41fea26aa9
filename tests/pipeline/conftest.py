from tests.api.conftest import api, league  # noqa: F401  (same fixtures)
