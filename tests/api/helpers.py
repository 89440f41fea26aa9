"""Driving the JSON API in tests, as named users (shared by tests/api and tests/pipeline)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from deltacrown.extensions import db


def iso(dt: datetime) -> str:
    return dt.isoformat()


def in_days(days: float) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(days=days))


class ApiDriver:
    def __init__(self, app, client, users):
        self.app, self.client, self.users = app, client, users

    def call(self, method: str, path: str, who: str | None = None, json=None, expect: int | None = None,
             **kwargs):
        headers = self.users.headers(who) if who else {}
        response = self.client.open("/api/v1" + path, method=method, json=json, headers=headers, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.get_data(as_text=True))
        return response

    def get(self, path, who, **kw):
        return self.call("GET", path, who, **kw)

    def post(self, path, who, json=None, **kw):
        return self.call("POST", path, who, json=json, **kw)

    def put(self, path, who, json=None, **kw):
        return self.call("PUT", path, who, json=json, **kw)

    def delete(self, path, who, **kw):
        return self.call("DELETE", path, who, **kw)

    # --- building a small world through the API ---------------------------------

    def team(self, name: str, captain: str, members=(), who: str = "admin") -> int:
        team_id = self.post("/teams", who, {"name": name, "tag": name[:3].upper(),
                                            "captain_id": self.users.ids[captain]}, expect=201).json["id"]
        for member in members:
            self.post(f"/teams/{team_id}/members", who, {"user_id": self.users.ids[member]}, expect=201)
        return team_id

    def tournament(self, name: str = "Winter Cup", who: str = "admin") -> int:
        return self.post("/tournaments", who, {"name": name, "starts_at": in_days(7)}, expect=201).json["id"]

    # --- looking at what the pipeline wrote ------------------------------------------

    def rows(self, model, *where, order_by=None):
        with self.app.app_context():
            stmt = select(model).where(*where).order_by(order_by if order_by is not None else model.id)
            rows = list(db.session.scalars(stmt))
            db.session.expunge_all()
            return rows

    def notified(self, type_name: str) -> dict[str, int]:
        """{username: count} of in-app notifications of this type."""
        from deltacrown.models import Notification

        names = {v: k for k, v in self.users.ids.items()}
        counts: dict[str, int] = {}
        for n in self.rows(Notification, Notification.type == type_name):
            counts[names.get(n.user_id, str(n.user_id))] = counts.get(names.get(n.user_id, str(n.user_id)), 0) + 1
        return counts

    def deliveries(self, type_name: str | None = None) -> list[tuple[str, str]]:
        """Sorted (channel, target) of the deliveries (of one type), targets by username for users."""
        from deltacrown.models import Delivery

        by_email = {f"{name}@example.com": name for name in self.users.ids}
        out = []
        for d in self.rows(Delivery):
            if type_name and (d.payload or {}).get("type") != type_name:
                continue
            target = by_email.get(d.target, d.target)
            if d.target.startswith("user:"):
                uid = int(d.target.split(":")[1])
                target = "user:" + next((k for k, v in self.users.ids.items() if v == uid), str(uid))
            out.append((d.channel, target))
        return sorted(out)
