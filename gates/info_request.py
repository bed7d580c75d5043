"""A reviewer's question and its answer: the request_info round a case waits on.

Pure domain, shared by the workflow (workflows/info_wait.py waits for the answer on durable timers),
the `answer_info` update, the CLI (`hitl answer`) and the channels. A request_info decision opens
one `InfoRequest`; the person asked (or an operator) answers it with an `InfoAnswer`; the deadline
without an answer closes it as `no_answer`. Every round is kept in the case file, its view and its
trace, so an auditor reads who asked what, who answered what, and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gates.bounds import MAX_ATTACHMENT_CHARS, MAX_ATTACHMENT_NAME_CHARS
from gates.cases import PersonId, Text
from gates.gate import MAX_PROOF_CHARS, Identity
from gates.text import one_visible_line_problem, person_text_problem

InfoOutcome = Literal["waiting", "answered", "no_answer"]


def _one_line(text: str) -> str:
    if problem := one_visible_line_problem(text):
        raise ValueError(f"attachment name {problem}")
    return text


def _attachment(text: str) -> str:
    if text and (problem := person_text_problem(text)):
        raise ValueError(f"attachment {problem}")
    return text


AttachmentName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ATTACHMENT_NAME_CHARS), AfterValidator(_one_line)
]
AttachmentText = Annotated[str, StringConstraints(max_length=MAX_ATTACHMENT_CHARS), AfterValidator(_attachment)]


class InfoAnswer(BaseModel):
    """Payload of the `answer_info` update: the answer to the open question, in the answerer's words."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    answerer: PersonId = Field(description="The person asked, or an operator of the gate")
    text: Text = Field(description="The answer, in the answerer's words")
    attachment_name: AttachmentName | None = Field(
        default=None, description="`hitl answer --file F`: the file's base name (one visible line)"
    )
    attachment_text: AttachmentText | None = Field(
        default=None, description=f"The file's UTF-8 text, at most {MAX_ATTACHMENT_CHARS} characters"
    )
    proof: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROOF_CHARS)] | None = Field(
        default=None, description="A signed token naming the answerer (`hitl token`), required in verified mode", repr=False
    )

    @model_validator(mode="after")
    def _attachment_whole(self) -> InfoAnswer:
        if (self.attachment_name is None) != (self.attachment_text is None):
            raise ValueError("an attachment needs both attachment_name and attachment_text")
        return self


class AnswerReceipt(BaseModel):
    """What the `answer_info` update returns to its caller."""

    case_id: str
    accepted: bool
    round: int
    message: str


class InfoRequest(BaseModel):
    """One question round: kept in the case file, the case view and the trace."""

    round: int = Field(description="The gate round the question was asked in (1 for the first)")
    asked_by: str = Field(description="The reviewer who asked")
    asked: str = Field(description="The person asked (default: the requester)")
    question: str = Field(description="The reviewer's reason on the request_info decision, in their words")
    asked_at: datetime
    remind_at: datetime
    due_at: datetime
    reminded_at: datetime | None = None
    answer: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
    attachment_name: str | None = None
    attachment_text: str | None = None
    outcome: InfoOutcome = "waiting"
    answered_identity: Identity | None = Field(default=None, description="How the case knew who answered")

    @property
    def waiting(self) -> bool:
        return self.outcome == "waiting"


__all__ = ["AnswerReceipt", "InfoAnswer", "InfoOutcome", "InfoRequest"]
