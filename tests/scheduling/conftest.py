"""Fixtures of the scheduling tests: a real SMTP server on loopback (aiosmtpd)."""
from __future__ import annotations

import email
import email.policy
import socket
import threading

import pytest
from aiosmtpd.controller import Controller


class Inbox:
    """Collects every message the loopback SMTP server accepts."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()
        self.refuse_with: str | None = None  # e.g. "451 try again later" to refuse every message
        self.refused: set[str] = set()  # RCPT for these addresses -> 550
        self.sessions: list = []  # the SMTP session (connection) of each accepted message

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            self.sessions.append(session)
        return "250 OK"

    @property
    def connections(self) -> int:
        return len({id(s) for s in self.sessions})

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]

    def text(self, message) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    def clear(self):
        with self._lock:
            self.messages.clear()
            self.sessions.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_inbox():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
def app_config(smtp_inbox):
    # Flask-Mail suppresses sending under TESTING unless told otherwise.
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_inbox.port, "MAIL_SUPPRESS_SEND": False}
