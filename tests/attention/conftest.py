"""Attention tests (mutes, quiet hours, email delay): the app points at the loopback SMTP and Discord stand-ins."""
from __future__ import annotations

import pytest

from tests.api.conftest import api, league  # noqa: F401  (same fixtures)


@pytest.fixture
def app_config(smtp_server, discord_server):
    return {**smtp_server.config(), **discord_server.config(), "DELIVERY_RETRY_INTERVALS": [0, 0]}


@pytest.fixture
def cup(api, league, run_jobs, smtp_server):
    """A tournament with Red and Blue registered, and a match between them; the notifications of
    building all that are sent and forgotten."""
    from deltacrown.extensions import db
    from deltacrown.models import Delivery, Notification
    from tests.api.helpers import in_days

    tid = api.tournament()
    for team in (league["red"], league["blue"]):
        api.post(f"/tournaments/{tid}/registrations", "admin", {"team_id": team}, expect=201)
    run_jobs()
    with api.app.app_context():
        db.session.query(Delivery).delete()
        db.session.query(Notification).delete()
        db.session.commit()
    smtp_server.clear()
    return {"tournament": tid, **league}


def new_match(api, cup) -> int:
    from tests.api.helpers import in_days

    return api.post(f"/tournaments/{cup['tournament']}/matches", "admin",
                    {"team_a_id": cup["red"], "team_b_id": cup["blue"], "scheduled_at": in_days(8)},
                    expect=201).json["id"]
