import pytest

from tests.api.helpers import ApiDriver


@pytest.fixture
def api(app, client, users):
    return ApiDriver(app, client, users)


@pytest.fixture
def league(api, users):
    """An admin, two teams (Red: cap + ann + bob; Blue: cyd + dee) and a free agent eve."""
    for name, admin in (("admin", True), ("cap", False), ("ann", False), ("bob", False), ("cyd", False),
                        ("dee", False), ("eve", False)):
        users.create(name, admin=admin)
    red = api.team("Red", "cap", ["ann", "bob"])
    blue = api.team("Blue", "cyd", ["dee"])
    return {"red": red, "blue": blue}
