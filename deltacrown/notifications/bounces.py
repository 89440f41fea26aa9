"""Bounces and complaints that come back after the send, read with the standard library's
`email` package, and applied through notifications.suppression (once each).

What is understood:

- RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status):
  per recipient, `Action: failed` with a 5.x.x Status is a hard bounce, with a 4.x.x Status a
  soft one; `delayed`, `delivered`, `relayed` and `expanded` are not bounces.
- RFC 5965 ARF complaints (multipart/report; report-type=feedback-report): a Feedback-Type
  other than `not-spam` is a complaint.
- A provider's JSON event {type: bounce|complaint, email, permanent, delivery_id?}.

Which email a report is about: the signed token of notifications.mail_headers, found in the
report's recipient headers (the VERP return path it was sent to: To, Delivered-To,
X-Original-To, Envelope-To), else in the original message's Message-ID (quoted by the
report), else anywhere in the report. A report naming no email of ours is still applied when
its address is a user's; otherwise it is left alone (`matched` false).

Reading a mailbox (`process_path`, the `flask process-bounces PATH` command): a Maildir (a
directory with cur/ and new/), an mbox file, a single .eml file, or a directory of .eml files.
Processing the same message twice changes nothing (its dedup key is the report's Message-ID,
or a digest of its bytes), so a cron job may run over the same mailbox again.
"""
from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import logging
import mailbox
import os
import re
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from ..extensions import db
from . import mail_headers, suppression
from .suppression import BOUNCE, COMPLAINT, Subject

log = logging.getLogger(__name__)

_RECIPIENT_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
_NOT_COMPLAINTS = {"not-spam"}
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


@dataclass
class Report:
    """One bounce or complaint about one recipient, as a report says it."""
    kind: str
    permanent: bool
    address: str | None
    code: str | None
    detail: str | None
    about: tuple[str, int] | None  # (kind, id) from our signed token
    dedup_key: str


def _address(value) -> str | None:
    """"rfc822; user@example.com" or "<user@example.com>" -> user@example.com."""
    text = str(value or "").strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    text = email.utils.parseaddr(text.strip())[1] or text.strip(" <>")
    return suppression.normalize(text) or None


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [email.message_from_string(block.strip() + "\n") for block in re.split(r"\r?\n\s*\r?\n", text)
            if block.strip()]


def _original(report: Message) -> Message | None:
    """The quoted original (message/rfc822, or just its headers as text/rfc822-headers)."""
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if ctype == "text/rfc822-headers":
            body = part.get_payload(decode=True) or b""
            return email.message_from_bytes(body, policy=email.policy.compat32)
    return None


def _about(report: Message, original: Message | None, raw: bytes) -> tuple[str, int] | None:
    for name in _RECIPIENT_HEADERS:
        for value in report.get_all(name) or ():
            found = mail_headers.read_token(str(value))
            if found:
                return found
    if original is not None:
        for name in ("Message-ID", "Return-Path", "References"):
            found = mail_headers.read_token(str(original.get(name) or ""))
            if found:
                return found
    return mail_headers.read_token(raw.decode("latin-1"))


def _dedup_base(report: Message, raw: bytes) -> str:
    message_id = str(report.get("Message-ID") or "").strip()
    if message_id:
        return "msg:" + message_id.lower()[:250]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


REPORT_TYPES = ("delivery-status", "feedback-report")


def is_report(raw: bytes) -> bool:
    """Whether `raw` is a multipart/report of a kind read here (RFC 3464 or RFC 5965)."""
    message = _parse(raw)
    return (message.get_content_type() == "multipart/report"
            and (message.get_param("report-type") or "").lower() in REPORT_TYPES)


def parse_report(raw: bytes) -> list[Report]:
    """The bounces and complaints in one message (empty: not a report this service reads)."""
    report = _parse(raw)
    if report.get_content_type() != "multipart/report":
        return []
    report_type = (report.get_param("report-type") or "").lower()
    original = _original(report)
    about = _about(report, original, raw)
    base = _dedup_base(report, raw)
    found: list[Report] = []
    for part in report.walk():
        ctype = part.get_content_type()
        if report_type == "delivery-status" and ctype == "message/delivery-status":
            for block in _blocks(part)[1:] or _blocks(part):
                action = str(block.get("Action") or "").strip().lower()
                status = str(block.get("Status") or "").strip()
                if action != "failed":
                    continue
                match = _STATUS.search(status)
                permanent = not (match and match.group(1) == "4")
                address = _address(block.get("Original-Recipient") or block.get("Final-Recipient"))
                diagnostic = str(block.get("Diagnostic-Code") or "").split(";", 1)[-1].strip()
                found.append(Report(BOUNCE, permanent, address, status or None, diagnostic or None, about,
                                    f"{base}:{address or ''}"))
        elif report_type == "feedback-report" and ctype == "message/feedback-report":
            fields = _blocks(part)
            block = fields[0] if fields else Message()
            feedback_type = str(block.get("Feedback-Type") or "abuse").strip().lower()
            if feedback_type in _NOT_COMPLAINTS:
                continue
            address = _address(block.get("Original-Rcpt-To")) or (
                _address(original.get("To")) if original is not None else None)
            found.append(Report(COMPLAINT, True, address, feedback_type, str(block.get("User-Agent") or "") or None,
                                about, f"{base}:{address or ''}"))
    return found


def _subject(report_about, address: str | None) -> Subject | None:
    if report_about is not None:
        subject = suppression.subject_of(*report_about)
        if subject is not None:
            return subject
    if address:
        subject = suppression.subject_by_address(address)
        if subject.user_id is not None:
            return subject
    return None


def process_message(raw: bytes, source: str | None = None) -> dict:
    """Apply every bounce and complaint in one raw message. Returns
    {"matched": bool, "recorded": n, "duplicates": n, "reports": n}."""
    outcome = {"matched": False, "recorded": 0, "duplicates": 0, "reports": 0}
    for report in parse_report(raw):
        outcome["reports"] += 1
        subject = _subject(report.about, report.address)
        if subject is None:
            log.info("bounce report for %s names no email or user of ours; ignored", report.address)
            continue
        outcome["matched"] = True
        # A report about an email of ours concerns the address we sent it to (not a forward's).
        address = subject.address if subject.matched else report.address
        new = suppression.apply_event(
            dedup_key=report.dedup_key, kind=report.kind, permanent=report.permanent, address=address,
            source=source or ("arf" if report.kind == COMPLAINT else "dsn"), subject=subject, code=report.code,
            detail=report.detail)
        outcome["recorded" if new else "duplicates"] += 1
    return outcome


def process_json_event(event: dict, today: str) -> dict:
    """A provider's event {type, email, permanent, delivery_id?}, validated by the API's schema.

    Its dedup key is its fields (with the delivery, or else the day): the same event posted
    twice is one event."""
    kind, address = event["type"], suppression.normalize(event["email"])
    permanent = True if kind == COMPLAINT else bool(event.get("permanent", True))
    delivery_id = event.get("delivery_id")
    subject = suppression.subject_of(mail_headers.DELIVERY, delivery_id) if delivery_id is not None else None
    if subject is None:
        subject = suppression.subject_by_address(address)
    elif suppression.normalize(subject.address) != address:
        subject = suppression.subject_by_address(address)  # about another address than that delivery's
    key = f"api:{kind}:{address}:{'hard' if permanent else 'soft'}:{delivery_id if delivery_id is not None else today}"
    new = suppression.apply_event(dedup_key=key, kind=kind, permanent=permanent, address=address, source="api",
                                  subject=subject)
    return {"matched": subject.matched or subject.user_id is not None, "recorded": int(new)}


# --- mailboxes ----------------------------------------------------------------------

def _messages(path: Path):
    """(name, raw bytes, remove) of every message at `path`."""
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        box = mailbox.Maildir(str(path), factory=None, create=False)
        for key in list(box.iterkeys()):
            yield f"maildir:{key}", box.get_bytes(key), (lambda k=key: box.discard(k))
    elif path.is_dir():
        for file in sorted(path.glob("*.eml")):
            yield str(file), file.read_bytes(), (lambda f=file: f.unlink(missing_ok=True))
    elif path.is_file():
        with open(path, "rb") as handle:
            mbox = handle.read(5) == b"From "
        if mbox:
            box = mailbox.mbox(str(path), factory=None, create=False)
            box.lock()
            try:
                for key in list(box.iterkeys()):
                    yield f"mbox:{key}", box.get_bytes(key), None
            finally:
                box.unlock()
                box.close()
        else:
            yield str(path), path.read_bytes(), (lambda: path.unlink(missing_ok=True))
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")


def process_path(path: str | os.PathLike, remove: bool = False) -> dict:
    """Process every message in a Maildir, an mbox, an .eml file or a directory of .eml files.

    `remove`: delete each message once processed (not from an mbox, which is left for the
    mail system to rotate). Returns counts."""
    counts = {"messages": 0, "recorded": 0, "duplicates": 0, "unmatched": 0, "not_reports": 0}
    for name, raw, discard in _messages(Path(path)):
        counts["messages"] += 1
        try:
            outcome = process_message(raw)
        except Exception:  # noqa: BLE001 - one unreadable message must not stop the rest
            db.session.rollback()
            log.exception("bounce message %s could not be processed; left in place", name)
            continue
        if not outcome["reports"]:
            counts["not_reports"] += 1
        elif not outcome["matched"]:
            counts["unmatched"] += 1
        counts["recorded"] += outcome["recorded"]
        counts["duplicates"] += outcome["duplicates"]
        if remove and discard is not None:
            discard()
    return counts
