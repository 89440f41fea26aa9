"""SMTP over TLS verifies the server's certificate, and the SMTP password never travels in
clear text unless the operator says so (MAIL_ALLOW_PLAINTEXT_AUTH).

Real parts: aiosmtpd servers on loopback speaking STARTTLS or implicit TLS with a
certificate made by `openssl` for this test session, sends run by a real RQ worker.
"""
from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from aiosmtpd.smtp import AuthResult

from deltacrown.config import ConfigError, load_config
from tests.support.processes import PYTHON, process_env, run_process
from tests.support.smtp import SmtpStandIn

MODES = ["starttls", "ssl"]  # MAIL_USE_TLS (STARTTLS on a plain connection) / MAIL_USE_SSL (TLS from the start)


def make_certificate(folder, names: str):
    """A self-signed certificate for `names` (a subjectAltName value): (certificate file, key file)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = folder / "mail-server.pem", folder / "mail-server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=mail server", "-addext", f"subjectAltName={names}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """The loopback server's certificate: it names 127.0.0.1, where the app connects."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "IP:127.0.0.1,DNS:localhost")


class Logins(list):
    """aiosmtpd authenticator that accepts any login and records (login, password, over TLS)."""

    def __call__(self, server, session, envelope, mechanism, auth_data):
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.append((auth_data.login.decode(), auth_data.password.decode(), tls))
        return AuthResult(success=True)


def start_server(mode: str | None, certificate, logins: Logins) -> SmtpStandIn:
    options = {"authenticator": logins, "auth_require_tls": mode == "starttls"}
    if mode:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*map(str, certificate))
        options["tls_context" if mode == "starttls" else "ssl_context"] = context
        if mode == "starttls":
            options["require_starttls"] = True
    return SmtpStandIn(**options).start()


@pytest.fixture
def mail_server(app):
    """`mail_server(mode, certificate, **config)`: an SMTP server speaking `mode` (see
    `start_server`) that the app sends through (see `point_mail_at`): (server, its Logins).
    Stopped after the test."""
    started = []

    def start(mode: str | None, certificate, **config) -> tuple[SmtpStandIn, Logins]:
        logins = Logins()
        server = start_server(mode, certificate, logins)
        started.append(server)
        point_mail_at(app, server, mode, **config)
        return server, logins

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def send_email(make, enqueue, run_jobs):
    """Write an email delivery to user `uid` at `address`, run the jobs that send it; its id."""
    def send(uid, address):
        did = make.delivery("email", address, notification_id=make.notification(uid), user_id=uid)
        enqueue(did)
        run_jobs()  # retry intervals [0, 0]: every try happens in this burst
        return did
    return send


def point_mail_at(app, server, mode, **config):
    """The app sends through `server` with MAIL_USE_TLS / MAIL_USE_SSL as `mode` says (and `config`)."""
    mail = app.extensions["mail"]  # Flask-Mail's settings, read when each connection opens
    mail.server, mail.port = server.host, server.port
    mail.use_tls, mail.use_ssl = mode == "starttls", mode == "ssl"
    mail.username, mail.password = "mailer", "s3cret-smtp-password"
    app.config.update(config)


@pytest.mark.parametrize("mode", MODES)
def test_a_server_certificate_nobody_trusts_is_refused_and_nothing_is_sent(
        users, make, send_email, certificate, mail_server, mode):
    server, logins = mail_server(mode, certificate)
    uid = users.create("ada")
    did = send_email(uid, "ada@example.com")
    d = make.get(did)
    assert d.status == "failed" and d.attempts == 3, (d.status, d.attempts, d.last_error)
    assert "certificate not trusted (self-signed certificate)" in d.last_error and "MAIL_TLS_CA_FILE" in d.last_error
    assert server.messages == [] and logins == []  # no email, and the password never left


@pytest.mark.parametrize("mode", MODES)
def test_with_its_ca_file_trusted_the_email_goes_out_encrypted_after_logging_in(
        users, make, send_email, certificate, mail_server, mode):
    server, logins = mail_server(mode, certificate, MAIL_TLS_CA_FILE=str(certificate[0]))
    uid = users.create("bob")
    did = send_email(uid, "bob@example.com")
    [mail] = server.wait_for(1)
    assert mail.rcpt_tos == ["bob@example.com"] and mail.tls
    assert logins == [("mailer", "s3cret-smtp-password", True)]
    assert make.get(did).status == "sent"


def test_the_certificate_must_name_the_server(app, users, make, send_email, mail_server, tmp_path):
    """A trusted CA is not enough: a certificate for another host name is refused too."""
    other_host = make_certificate(tmp_path, "DNS:mail.example.org")
    server, logins = mail_server("starttls", other_host, MAIL_TLS_CA_FILE=str(other_host[0]))
    app.config["DELIVERY_RETRY_INTERVALS"] = []
    uid = users.create("cleo")
    did = send_email(uid, "cleo@example.com")
    d = make.get(did)
    assert d.status == "failed" and "127.0.0.1" in d.last_error, d.last_error
    assert server.messages == [] and logins == []


# --- no login in clear text -------------------------------------------------------

def test_mail_username_without_tls_is_a_configuration_error():
    with pytest.raises(ConfigError) as err:
        load_config({"MAIL_USERNAME": "mailer", "MAIL_PASSWORD": "pw"})
    message = str(err.value)
    assert message.startswith("MAIL_USERNAME:") and "\n" not in message
    assert "MAIL_USE_TLS" in message and "MAIL_ALLOW_PLAINTEXT_AUTH" in message
    for allowed in ({"MAIL_USE_TLS": "true"}, {"MAIL_USE_SSL": "true"}, {"MAIL_ALLOW_PLAINTEXT_AUTH": "true"}):
        config = load_config({"MAIL_USERNAME": "mailer", "MAIL_PASSWORD": "pw", **allowed})
        assert config["MAIL_USERNAME"] == "mailer"
    assert load_config({})["MAIL_ALLOW_PLAINTEXT_AUTH"] is False


def test_a_worker_with_a_plaintext_smtp_login_configured_stops_with_one_line(tmp_path, redis_url):
    env = process_env(DATABASE_URL=f"sqlite:///{tmp_path / 'cfg.sqlite'}", REDIS_URL=redis_url,
                      MAIL_USERNAME="mailer", MAIL_PASSWORD="s3cret-smtp-password")
    result = run_process([PYTHON, "worker.py"], env=env, timeout=60)
    assert result.returncode != 0 and result.stdout.strip() == ""
    [line] = result.stderr.strip().splitlines()
    assert "configuration error" in line and "MAIL_USERNAME" in line and "Traceback" not in result.stderr
    assert "s3cret-smtp-password" not in result.stderr


def test_a_ca_file_that_is_not_there_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="^MAIL_TLS_CA_FILE:"):
        load_config({"MAIL_TLS_CA_FILE": str(tmp_path / "missing.pem")})
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="^MAIL_TLS_CA_FILE:"):
        load_config({"MAIL_TLS_CA_FILE": str(tmp_path / "junk.pem")})


def test_without_tls_the_login_is_refused_at_send_time_unless_plaintext_is_allowed(
        app, users, make, send_email, mail_server):
    """Config that never went through the environment check (set in code) is refused when sending:
    at once, without retries, and before the password is sent."""
    server, logins = mail_server(None, None)
    uid = users.create("dan")
    refused = send_email(uid, "dan@example.com")
    d = make.get(refused)
    assert d.status == "failed" and d.attempts == 1 and "MAIL_ALLOW_PLAINTEXT_AUTH" in d.last_error
    assert server.messages == [] and logins == []

    app.config["MAIL_ALLOW_PLAINTEXT_AUTH"] = True  # e.g. a relay on a private network
    allowed = send_email(uid, "dan@example.com")
    [mail] = server.wait_for(1)
    assert not mail.tls and logins == [("mailer", "s3cret-smtp-password", False)]
    assert make.get(allowed).status == "sent"
