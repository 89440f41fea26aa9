"""The served OpenAPI document describes every endpoint of the contract."""

CONTRACT = [
    ("post", "/users"), ("get", "/me"), ("post", "/teams"), ("get", "/teams/{team_id}"),
    ("put", "/teams/{team_id}/discord-webhook"), ("post", "/teams/{team_id}/invites"),
    ("post", "/invites/{invite_id}/accept"), ("post", "/invites/{invite_id}/decline"),
    ("post", "/teams/{team_id}/members"), ("delete", "/teams/{team_id}/members/{user_id}"),
    ("post", "/tournaments"), ("get", "/tournaments/{tournament_id}"),
    ("post", "/tournaments/{tournament_id}/registrations"), ("post", "/tournaments/{tournament_id}/bracket-ready"),
    ("post", "/tournaments/{tournament_id}/matches"), ("post", "/matches/{match_id}/result"),
    ("patch", "/matches/{match_id}"),
    ("post", "/tournaments/{tournament_id}/complete"), ("post", "/teams/{team_id}/sponsors"),
    ("post", "/sponsors/{sponsor_id}/approve"), ("post", "/teams/{team_id}/promotions"),
    ("post", "/teams/{team_id}/achievements"), ("get", "/users/{user_id}/coins"),
    ("get", "/notifications"), ("get", "/notifications/unread-count"),
    ("post", "/notifications/{notification_id}/read"), ("post", "/notifications/read-all"),
    ("get", "/preferences"), ("put", "/preferences"), ("post", "/announcements"),
    ("get", "/payouts"), ("post", "/payouts/{payout_id}/approve"), ("post", "/payouts/{payout_id}/reject"),
    # v1.1 "Attention"
    ("post", "/notifications/seen"), ("post", "/notifications/{notification_id}/archive"),
    ("post", "/notifications/{notification_id}/unarchive"), ("post", "/notifications/{notification_id}/snooze"),
    ("delete", "/notifications/{notification_id}/snooze"),
]


def test_every_contract_endpoint_is_described(client):
    doc = client.get("/api/v1/openapi.json").json
    paths = doc["paths"]
    for method, path in CONTRACT:
        operation = paths.get("/api/v1" + path, {}).get(method)
        assert operation, f"{method.upper()} {path} missing from the OpenAPI document"
        assert operation.get("summary") or operation.get("description"), path
    body = paths["/api/v1/tournaments/{tournament_id}/complete"]["post"]["requestBody"]
    assert body["required"] is True
    team_id = paths["/api/v1/teams/{team_id}"]["parameters"][0]["schema"]
    assert team_id["minimum"] == 1 and team_id["maximum"] == 2**31 - 1
