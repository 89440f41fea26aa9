import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

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


@pytest.fixture
def fuzz_every_operation(app, api, league, users):
    """`fuzz_every_operation(modes, examples_per_operation, check)`: for every operation of the
    served OpenAPI document, schemathesis generates requests in each of `modes` (sent as the
    admin, with a tournament that has both league teams registered) and calls
    `check(operation, mode, case, send)`; `send(case)` makes the request and returns the
    response. Returns the operations."""
    tid = api.tournament()
    for team in (league["red"], league["blue"]):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    auth = {"Authorization": f"Bearer {users.tokens['admin']}"}

    def send(case):
        response = case.call(headers=auth)
        if case.operation.path.endswith("/me/token") and response.status_code == 200:
            auth["Authorization"] = f"Bearer {response.json()['api_token']}"  # the old one stopped working
        return response

    def fuzz(modes, examples_per_operation: int, check) -> list:
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for mode in modes:
                @given(case=operation.as_strategy(mode, headers=auth))
                @settings(max_examples=examples_per_operation, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def run(case):
                    check(operation, mode, case, send)
                try:
                    run()
                except Unsatisfiable:
                    # nothing in this operation can be made invalid (e.g. GET /me has no inputs)
                    assert mode is GenerationMode.NEGATIVE, operation.label
        return operations

    return fuzz
