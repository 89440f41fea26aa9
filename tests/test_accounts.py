from sqlalchemy import func, select

from deltacrown.accounts.models import User
from deltacrown.extensions import db
from deltacrown.notifications.models import NotificationPreference


def count_users(app):
    with app.app_context():
        return db.session.scalar(select(func.count(User.id)))


def test_create_user_prints_token_once_and_stores_only_its_hash(app, runner, client):
    result = runner.invoke(args=["create-user", "alice", "--email", "alice@example.com", "--password", "s3cret-pass"])
    assert result.exit_code == 0, result.output
    token = result.output.split("API token (shown once, store it now): ")[1].strip()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert user.api_token_hash != token and token not in user.api_token_hash
        assert user.password_hash != "s3cret-pass"
        # default preferences exist from the start
        assert db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    # the login page accepts the password
    response = client.post("/login", data={"username": "alice", "password": "s3cret-pass"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_create_user_admin_without_password_generates_one(app, runner):
    result = runner.invoke(args=["create-user", "root", "--email", "root@example.com", "--admin"])
    assert result.exit_code == 0, result.output
    assert "Password: " in result.output and "Created admin root" in result.output


def test_create_user_rejects_taken_username_and_bad_email_writing_nothing(app, runner):
    assert runner.invoke(args=["create-user", "bob", "--email", "bob@example.com"]).exit_code == 0
    taken = runner.invoke(args=["create-user", "BOB", "--email", "other@example.com"])
    assert taken.exit_code != 0 and "taken" in taken.output
    bad = runner.invoke(args=["create-user", "carol", "--email", "not-an-email"])
    assert bad.exit_code != 0 and "email" in bad.output
    assert "Traceback" not in taken.output + bad.output
    assert count_users(app) == 1


def test_login_wrong_password_is_refused(app, client, users):
    users.create("dave")
    response = client.post("/login", data={"username": "dave", "password": "wrong"})
    assert response.status_code == 401
    assert b"Wrong username or password" in response.data


def test_logged_out_visitor_is_sent_to_login_and_back(app, client, users, auth):
    users.create("erin")
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = client.post("/login?next=/", data={"username": "erin", "password": users.passwords["erin"]})
    assert response.headers["Location"] == "/"


def test_login_never_redirects_off_site(app, client, users):
    users.create("frank")
    response = client.post("/login?next=https://evil.example/", data={"username": "frank",
                                                                      "password": users.passwords["frank"]})
    assert "evil.example" not in response.headers["Location"]
