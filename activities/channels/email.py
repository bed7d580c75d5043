"""Email over SMTP (aiosmtplib): one plain-text message to everyone concerned who has an address in
the directory, with the case, the ask, the level, the deadline and both links (and, to the person a
reviewer asked a question, the `hitl answer` command).

Plain text, so there is no markup for anyone's words to form: people's words are quoted as theirs
(`alice wrote (question):` and `> ` lines), with hidden characters shown as marks. The Message-ID is
derived from the notification, so a receiving system that deduplicates sees a re-send (after a
crash between sending and recording) as the same message.

Answers, by kind:
- no connection, a timeout, a dropped session, a 4xx reply (greylisting, a full queue): RetryLater;
- a 5xx reply (a refused login, a refused sender), every recipient refused: Undeliverable;
- some recipients refused: delivered to the others, the refused ones recorded.
"""

from __future__ import annotations

import hashlib
import os
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from activities.channels.base import RetryLater, Sent, Undeliverable, one_line
from activities.channels.message import OutgoingMessage
from gates.text import neutralize

_SUBJECT_MAX = 200


class EmailChannel:
    name = "email"
    error_type = "SmtpUnavailable"

    def __init__(
        self,
        *,
        host: str,
        port: int | None,
        sender: str,
        user: str | None,
        password: str | None,
        starttls: bool,
        timeout_seconds: float,
    ):
        self._host, self._port, self._sender = host, port, sender
        self._user, self._password = user, password
        self._starttls = starttls
        self._timeout = timeout_seconds

    @property
    def server(self) -> str:
        return f"{self._host}:{self._port}" if self._port else self._host

    async def send(self, message: OutgoingMessage, *, message_key: str) -> Sent:
        to = [r.email for r in message.recipients.reached]
        if not to:
            return Sent()  # nobody with an address: the outbox row lists who was skipped
        email = build_email(message, sender=self._sender, message_key=message_key)
        try:
            refused, _ = await aiosmtplib.send(
                email,
                hostname=self._host,
                port=self._port or (587 if self._starttls else 25),
                username=self._user,
                password=self._password,
                start_tls=self._starttls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            error = one_line(f"SMTP server {self.server} refused every recipient: {_refusals(err)}")
            if all(400 <= r.code < 500 for r in err.recipients):
                raise RetryLater(error) from None  # refused for now (a full mailbox, greylisting)
            raise Undeliverable(error) from None
        except aiosmtplib.SMTPTimeoutError:
            raise RetryLater(f"SMTP server {self.server} did not answer within {self._timeout:g}s") from None
        except aiosmtplib.SMTPResponseException as err:
            error = one_line(f"SMTP server {self.server} answered {err.code}: {err.message}")
            if 400 <= err.code < 500:
                raise RetryLater(error) from None
            raise Undeliverable(error) from None
        except (aiosmtplib.SMTPException, OSError) as err:
            raise RetryLater(one_line(f"cannot reach SMTP server {self.server}: {_reason(err)}")) from None
        return Sent(
            to=[address for address in to if address not in refused],
            refused={address: one_line(f"{reply.code} {reply.message}") for address, reply in refused.items()},
        )


def build_email(m: OutgoingMessage, *, sender: str, message_key: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(r.address() for r in m.recipients.reached)
    subject = neutralize(f"[hitl] {m.title}: {m.ask} (case {m.case_id})", keep_newlines=False)
    email["Subject"] = subject if len(subject) <= _SUBJECT_MAX else subject[: _SUBJECT_MAX - 1] + "…"
    email["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "hitl.invalid"
    email["Message-ID"] = f"<{hashlib.sha256(message_key.encode()).hexdigest()[:40]}@{domain}>"
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    email.set_content(email_body(m))
    return email


def email_body(m: OutgoingMessage) -> str:
    n = m.notification
    lines = [neutralize(n.message.strip() or f"{m.title}: {m.ask}"), ""]
    rows = m.facts()
    lines += [f"{label + ':':<11}{neutralize(value, keep_newlines=False)}" for label, value in rows]
    for quote in m.quotes:
        who = neutralize(f"{quote.person} wrote ({quote.label}):", keep_newlines=False)
        said = neutralize(quote.text.replace("\r\n", "\n")).split("\n")
        lines += ["", who, *(f"> {line}" for line in said)]
    ui = f"  {m.ui_url}" if m.ui_url else "  (no UI address known: set HITL_UI_BASE_URL)"
    lines += ["", "Open the case in the Temporal Web UI:", ui]
    lines += ["", "Or from a terminal:", *(f"  {command}" for command in m.commands()), ""]
    return "\n".join(lines)


def _reason(err: BaseException) -> str:
    """`Connection refused`, not aiosmtplib's wrapper repeating the host and port we already name."""
    cause = err.__cause__ if isinstance(err.__cause__, OSError) else err
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    return f"{type(err).__name__}: {err}"


def _refusals(err: aiosmtplib.SMTPRecipientsRefused) -> str:
    return "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in err.recipients)
