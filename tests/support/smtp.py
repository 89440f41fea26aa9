"""A real SMTP server on loopback (aiosmtpd) for tests that send email.

Fixture `smtp_server` (function scope) starts one on a free port and yields an
`SmtpStandIn`:

    smtp_server.config()          # {"MAIL_SERVER", "MAIL_PORT", "MAIL_SUPPRESS_SEND": False}
    smtp_server.messages          # [ReceivedMail] (parsed with the `email` package)
    smtp_server.wait_for(2)       # block (bounded) until 2 messages arrived
    smtp_server.refuse("x@y")     # RCPT for that address -> 550 (permanent)
    smtp_server.defer("x@y", 2)   # the next 2 RCPTs for that address -> 451 (temporary)
    smtp_server.fail_temporarily = True   # every RCPT -> 451 (temporary)
    smtp_server.refuse_data_with = "451 4.3.0 later"   # every DATA gets this reply (recipients were accepted)
    smtp_server.stop(); smtp_server.start()   # down (connections refused), then up on the same port
    smtp_server.drop_connections = 1      # the next RCPT: the server hangs up instead of answering
    mail.connection                       # 1, 2, ...: which SMTP connection carried a message
    mail.tls                              # whether that connection was encrypted (STARTTLS or implicit)
    mail["To"], mail.text, mail.html      # a header, the decoded parts
    smtp_server.clear()                   # forget the messages and connections received so far

`SmtpStandIn(**smtp_options)` passes aiosmtpd's options on (e.g. `tls_context=` for
STARTTLS, `ssl_context=` for implicit TLS, `authenticator=`).

Point the app at it from a test module:

    @pytest.fixture
    def app_config(smtp_server):
        return smtp_server.config()

Worker subprocesses get the same through `smtp_server.env()` (environment variables).
"""
from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from tests.support.processes import free_port


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list
    message: EmailMessage
    raw: bytes
    connection: int = 0
    tls: bool = False

    def __getitem__(self, header: str):
        return self.message[header]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        """The decoded body part of this type ("text/plain" or "text/html")."""
        body = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        if body is None or body.get_content_type() != content_type:
            raise AssertionError(f"no {content_type} part in message {self.subject!r}")
        return body.get_content()

    @property
    def text(self) -> str:
        return self.part("text/plain")

    @property
    def html(self) -> str:
        return self.part("text/html")


class _Handler:
    def __init__(self, stand_in: "SmtpStandIn"):
        self.stand_in = stand_in

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stand_in.drop_connections:
            self.stand_in.drop_connections -= 1
            server.transport.close()  # a server that goes away mid-session
            return "421 4.3.0 closing"  # never reaches the client
        if self.stand_in.fail_temporarily:
            return "451 4.3.0 Temporary local problem, try again later"
        if address.lower() in self.stand_in.refused:
            return "550 5.1.1 No such user here"
        if self.stand_in.deferred.get(address.lower(), 0) > 0:
            self.stand_in.deferred[address.lower()] -= 1
            return "451 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stand_in.refuse_data_with:
            return self.stand_in.refuse_data_with
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self.stand_in.arrived:
            connection = self.stand_in.connections.setdefault(session, len(self.stand_in.connections) + 1)
            tls = server.transport.get_extra_info("ssl_object") is not None
            self.stand_in.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message, raw,
                                                       connection, tls))
            self.stand_in.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpStandIn:
    def __init__(self, host: str = "127.0.0.1", **smtp_options):
        self.host = host
        self.smtp_options = smtp_options
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.refused: set[str] = set()
        self.deferred: dict[str, int] = {}
        self.fail_temporarily = False
        self.drop_connections = 0
        self.refuse_data_with: str | None = None
        self.connections: dict = {}  # aiosmtpd session -> its number, in order of first message
        self.arrived = threading.Condition()
        self._controller = None

    def start(self):
        """Listen on this stand-in's port (again, after `stop()`); messages received so far are kept."""
        if self._controller is None:
            controller = Controller(_Handler(self), hostname=self.host, port=self.port, **self.smtp_options)
            controller.start()
            self._controller = controller
        return self

    def stop(self):
        """Stop listening: until `start()`, connections to the port are refused (a real outage)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def refuses_connections(self) -> bool:
        """True if nothing listens on the port: a connection attempt is refused."""
        try:
            socket.create_connection((self.host, self.port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    def refuse(self, address: str) -> None:
        self.refused.add(address.lower())

    def defer(self, address: str, times: int = 1) -> None:
        """The next `times` messages to this address get a temporary 451."""
        self.deferred[address.lower()] = times

    def clear(self) -> None:
        with self.arrived:
            self.messages.clear()
            self.connections.clear()

    def config(self) -> dict:
        return {"MAIL_SERVER": self.host, "MAIL_PORT": self.port, "MAIL_SUPPRESS_SEND": False,
                "MAIL_USE_TLS": False, "MAIL_USE_SSL": False}

    def env(self) -> dict:
        return {"MAIL_SERVER": self.host, "MAIL_PORT": str(self.port), "MAIL_SUPPRESS_SEND": "false"}

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} email(s) within {timeout} s, got {len(self.messages)}")
                self.arrived.wait(left)
            return list(self.messages)


@pytest.fixture
def smtp_server():
    stand_in = SmtpStandIn().start()
    yield stand_in
    stand_in.stop()
