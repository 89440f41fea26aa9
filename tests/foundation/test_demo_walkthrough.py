"""The README's "What you can try", followed on the demo world as a newcomer would (test
client; the jobs the worker would run are run by the `run_jobs` fixture)."""
from sqlalchemy import select

from deltacrown.extensions import db
from deltacrown.models import Notification, Team, Tournament, User
from deltacrown.ops.demo import DEMO_TOURNAMENT


def log_in(app, username):
    client = app.test_client()
    assert client.post("/login", data={"username": username, "password": f"{username}-demo-pass"}).status_code == 302
    return client


def notification(app, username, title_part):
    with app.app_context():
        return db.session.scalar(select(Notification).join(User, User.id == Notification.user_id)
                                 .where(User.username == username, Notification.title.contains(title_part)))


def test_the_readme_walkthrough_on_the_demo_world(app, runner, run_jobs):
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    with app.app_context():
        owls = db.session.scalar(select(Team).where(Team.name == "Silver Owls")).id
        hawks = db.session.scalar(select(Team).where(Team.name == "Crimson Hawks")).id
        cup = db.session.scalar(select(Tournament).where(Tournament.name == DEMO_TOURNAMENT)).id

    # 1. heidi answers her invite from the center; grace is told; My teams and the team page list it.
    heidi = log_in(app, "heidi")
    invite = notification(app, "heidi", "Silver Owls invited you to join")
    center = heidi.get("/notifications").get_data(as_text=True)
    assert "Silver Owls invited you to join" in center and ">Accept<" in center and ">Decline<" in center
    answered = heidi.post(f"/notifications/{invite.id}/actions/accept", headers={"HX-Request": "true"})
    assert answered.status_code == 200 and "You joined Silver Owls" in answered.get_data(as_text=True)
    run_jobs()
    assert notification(app, "grace", "heidi") is not None
    assert "Silver Owls" in heidi.get("/me/teams").get_data(as_text=True)
    assert "heidi" in heidi.get(f"/teams/{owls}").get_data(as_text=True)

    # 2. alice follows a match result to the cup's page, in Berlin time.
    alice = log_in(app, "alice")
    result = notification(app, "alice", "Crimson Hawks beat Azure Wolves 2-1")
    assert result.url.startswith(f"/tournaments/{cup}")
    page = alice.get(result.url.split("#")[0]).get_data(as_text=True)
    assert DEMO_TOURNAMENT in page and "Europe/Berlin" in page

    # 3. alice, captain of the Crimson Hawks: the invite box suggests frank; she invites him.
    assert "frank" in alice.get("/users/suggest?q=fr").get_data(as_text=True)
    assert alice.post(f"/teams/{hawks}/invite", data={"username": "frank"}).status_code == 303
    run_jobs()
    frank = log_in(app, "frank")
    assert "Crimson Hawks invited you to join" in frank.get("/notifications").get_data(as_text=True)
    assert "Crimson Hawks" in frank.get("/me/teams").get_data(as_text=True)

    # 4. and 5. Settings for everyone; Ops and the email preview for the admin.
    assert frank.get("/settings/notifications").status_code == 200
    admin = log_in(app, "admin")
    assert 'id="nav-ops"' in admin.get("/notifications").get_data(as_text=True)
    assert admin.get("/ops").status_code == 200
    assert admin.get("/admin/email-preview").status_code == 200
