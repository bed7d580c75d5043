"""Slack (or any Slack-compatible incoming webhook): a message of blocks with the case, the ask, the
level, the deadline, a button to the case in the Temporal Web UI and the `hitl show` command.

Only our own labels and the deadline's date token are mrkdwn. Every value (the case, the ask, the
level, the message) is `plain_text`, which Slack shows as written: an underscore in an account id
cannot turn italic and `<!channel>` cannot ping anyone. People's words go in `rich_text` quotes,
whose text elements are literal too, under the name of whoever wrote them. Hidden characters are
shown as marks everywhere, and the `text` fallback (the system's words only) has Slack's three
control characters escaped.

Answers, by kind:
- 5xx, 429 (after its Retry-After), timeout, connection error: RetryLater;
- any other non-2xx (a revoked or mistyped webhook, blocks Slack refuses): Undeliverable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

import httpx

from activities.channels.base import RetryLater, Sent, Undeliverable, one_line
from activities.channels.message import OutgoingMessage
from gates.text import neutralize

# Slack's limits: a header's text, a section's text and a field's text, a button's URL.
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000
_BUTTON_URL_MAX = 3000
# Honour a 429's Retry-After up to this long; beyond it the activity's retry policy decides.
_MAX_RETRY_AFTER = timedelta(minutes=10)
# The facts (OutgoingMessage.facts) that are the deadline, shown as Slack's local-time date token.
_DEADLINE_LABELS = frozenset({"Deadline", "Answer by"})


class SlackChannel:
    name = "slack"
    error_type = "WebhookUnavailable"

    def __init__(self, url: str, timeout_seconds: float):
        self._url = url
        self._timeout = timeout_seconds

    async def send(self, message: OutgoingMessage, *, message_key: str) -> Sent:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self._url, json=slack_message(message))
        except httpx.TimeoutException:
            raise RetryLater(f"webhook did not answer within {self._timeout:g}s") from None
        except httpx.HTTPError as err:
            raise RetryLater(f"cannot reach webhook: {type(err).__name__}: {err}") from None
        if response.is_success:
            return Sent(to=["webhook"])
        _refused(response)


def _refused(response: httpx.Response) -> NoReturn:
    error = one_line(f"webhook answered HTTP {response.status_code}: {response.text[:200]}")
    if response.status_code >= 500 or response.status_code == 429:
        raise RetryLater(error, retry_after=_retry_after(response))
    raise Undeliverable(error)


def slack_message(m: OutgoingMessage) -> dict[str, Any]:
    """An incoming-webhook body: a plain `text` fallback (the system's words only) and `blocks`."""
    n = m.notification
    deadline = m.deadline_text()
    when = _mrkdwn(f"<!date^{m.deadline_unix()}^{{date_short_pretty}} {{time}}|{deadline}>") if deadline else _plain("none set")
    # label | value, in the section's two columns; the deadline as Slack's date token
    facts = [(label, when if label in _DEADLINE_LABELS else _plain(value)) for label, value in m.facts()]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{m.title}: {m.case_id}", _HEADER_MAX)},
        {"type": "section", "fields": [field for label, value in facts for field in (_mrkdwn(f"*{label}*"), value)]},
    ]
    if n.message.strip():
        blocks.append({"type": "section", "text": _plain(n.message, _SECTION_MAX)})
    blocks += [_quote_block(q.person, q.label, q.text) for q in m.quotes]
    if m.ui_url and len(m.ui_url) <= _BUTTON_URL_MAX:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Temporal UI", "emoji": False},
                        "url": m.ui_url,
                        "action_id": "open-case-in-temporal-ui",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "From a terminal:"}]},
                *(
                    {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": command}]}
                    for command in m.commands()
                ),
            ],
        }
    )
    fallback = f"{m.title}: case {m.case_id} ({m.ask}) for {m.people()}"
    if m.ui_url:
        fallback += f": {m.ui_url}"
    return {"text": escape(_clip(fallback, _SECTION_MAX)), "blocks": blocks}


def _quote_block(person: str, label: str, text: str) -> dict[str, Any]:
    """`<person> wrote (<label>):` and their words as a Slack quote, literal."""
    return {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": neutralize(person, keep_newlines=False), "style": {"bold": True}},
                    {"type": "text", "text": f" wrote ({neutralize(label, keep_newlines=False)}):"},
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": _clip(neutralize(text), _SECTION_MAX)}]},
        ],
    }


def _plain(text: str, limit: int = _FIELD_MAX) -> dict[str, Any]:
    """A text object Slack shows as written (no mrkdwn, mentions or links), hidden characters marked."""
    return {"type": "plain_text", "text": _clip(neutralize(text), limit), "emoji": False}


def _mrkdwn(text: str) -> dict[str, str]:
    """Our own markup only: labels and the date token."""
    return {"type": "mrkdwn", "text": text}


def escape(text: str) -> str:
    """The system's text for mrkdwn: Slack's three control characters escaped, hidden characters marked."""
    return neutralize(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(response: httpx.Response) -> timedelta | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return min(timedelta(seconds=seconds), _MAX_RETRY_AFTER)
