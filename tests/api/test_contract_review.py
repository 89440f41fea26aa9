"""Points where the service and the API contract disagreed (found in review), held to the contract."""
from __future__ import annotations

from deltacrown.teams.models import Team


def test_a_body_that_is_not_json_is_415_with_the_error_body_and_writes_nothing(api, league, users):
    before = len(api.rows(Team))
    response = api.client.post("/api/v1/teams", data=f"name=Green&captain_id={users.ids['eve']}",
                               content_type="application/x-www-form-urlencoded", headers=users.headers("admin"))
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"
    assert "application/json" in response.json["error"]["message"]
    assert response.json["error"]["fields"] == {}
    assert len(api.rows(Team)) == before
    # An unknown route or method is still a 404 / 405, whatever the body.
    for path, status in (("/api/v1/nowhere", 404), ("/api/v1/me", 405)):
        other = api.client.post(path, data="x=1", content_type="application/x-www-form-urlencoded",
                                headers=users.headers("admin"))
        assert other.status_code == status and other.json["error"]["code"] in ("not_found", "method_not_allowed")
    # JSON (with a charset) still works, and so does a POST that has no body at all.
    ok = api.client.post("/api/v1/teams", data=f'{{"name": "Green", "captain_id": {users.ids["eve"]}}}',
                         content_type="application/json; charset=utf-8", headers=users.headers("admin"))
    assert ok.status_code == 201, ok.get_data(as_text=True)
    tid = api.tournament()
    api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": league["red"]}, expect=201)
    api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": league["blue"]}, expect=201)
    assert api.client.post(f"/api/v1/tournaments/{tid}/bracket-ready",
                           headers=users.headers("admin")).status_code == 200


def test_jobs_api_checks_the_caller_before_the_body(api, league, users):
    bad_body = {"days": "not a number"}
    anonymous = api.client.post("/api/v1/jobs/cleanup-notifications/run", json=bad_body)
    assert anonymous.status_code == 401 and anonymous.json["error"]["code"] == "unauthorized"
    player = api.post("/jobs/cleanup-notifications/run", "cap", bad_body)
    assert player.status_code == 403 and player.json["error"]["code"] == "forbidden"
    assert api.get("/jobs", "cap").status_code == 403
    assert api.client.get("/api/v1/jobs/runs/whatever").status_code == 401
    assert api.post("/jobs/cleanup-notifications/run", "admin", bad_body).status_code == 422


def test_openapi_document_describes_the_error_body_that_is_sent(api, league):
    spec = api.client.get("/api/v1/openapi.json").json
    ref = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"error"}
    inner = schema["properties"]["error"]
    if "$ref" in inner:
        inner = spec["components"]["schemas"][inner["$ref"].rsplit("/", 1)[1]]
    assert set(inner["properties"]) == {"code", "message", "fields"}
    actual = api.get("/teams/999999", "admin", expect=404).json
    assert set(actual) == {"error"} and set(actual["error"]) == {"code", "message", "fields"}


def test_metrics_content_type_names_its_charset_once(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("text/plain") and content_type.count("charset") == 1, content_type


def test_jobs_list_has_the_contract_list_shape_and_fields(api, league):
    listed = api.get("/jobs", "admin", expect=200).json
    assert set(listed) == {"items", "next_cursor"} and listed["next_cursor"] is None
    names = {job["name"] for job in listed["items"]}
    assert names >= {"recompute-rankings", "distribute-payouts", "check-tournament-wrapup", "clean-expired-invites",
                     "expire-sponsors", "process-promotions", "send-digests", "cleanup-notifications"}
    for job in listed["items"]:
        assert {"name", "schedule", "next_run_at", "last_status"} <= set(job)


def test_job_arguments_beyond_any_id_are_422_not_a_database_error(api, league):
    for name in ("distribute-payouts", "recompute-rankings"):
        response = api.post(f"/jobs/{name}/run", "admin", {"tournament_id": 2**40})
        assert response.status_code == 422, response.get_data(as_text=True)
        assert "tournament_id" in response.json["error"]["fields"]
    response = api.post("/jobs/cleanup-notifications/run", "admin", {"days": 2**63})
    assert response.status_code == 422, response.get_data(as_text=True)


def test_cli_tournament_ids_and_days_beyond_range_are_one_line_errors(app, runner):
    for args in (["distribute-payouts", str(2**40)], ["recompute-rankings", "--tournament-id", str(2**40)],
                 ["cleanup-notifications", "--days", str(10**9)]):
        result = runner.invoke(args=args)
        assert result.exit_code != 0, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, repr(result.exception))
        assert "Error: Invalid value" in result.output and "Traceback" not in result.output, result.output


def test_invalid_preferences_name_the_field_in_words_a_person_can_act_on(api, league):
    response = api.put("/preferences", "cap", {"channels": {"nope": ["email"], "invite_sent": ["pigeon"]}}, expect=422)
    error = response.json["error"]
    assert set(error["fields"]) == {"channels"}
    text = error["fields"]["channels"]
    assert isinstance(text, str), text
    assert "unknown notification type 'nope'" in text and "invite_sent: unknown channel 'pigeon'" in text, text
    assert "{" not in error["message"], error["message"]
