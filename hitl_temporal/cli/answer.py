"""`hitl answer CASE --text TEXT [--file F] [--as PERSON]`: answer the question a case waits on.

The answer goes through the case's `answer_info` update with a proof of who answers, as a decision
does (hitl_temporal.cli.proofs): only the person asked, or an operator of the gate, may answer, and
the case says so in one line when it refuses. `--file` attaches a text file, read with a cap before
anything is sent: a binary file, text that is not UTF-8, or more than the case keeps is refused
here, naming the file, so nothing half-read reaches the case.
"""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from activities.bounded_read import FileUnreadable, read_file_at_most, shown_path
from gates.bounds import MAX_ATTACHMENT_CHARS, MAX_ATTACHMENT_NAME_CHARS
from gates.gate import validation_problems
from gates.info_request import InfoAnswer
from gates.text import one_visible_line_problem, person_text_problem
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import CaseFileError, one_line
from hitl_temporal.cli.decisions import DECISION_TIMEOUT_SECONDS
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for

# UTF-8 takes at most 4 bytes a character: a file longer than this cannot fit, whatever it holds.
MAX_ATTACHMENT_BYTES = 4 * MAX_ATTACHMENT_CHARS
_BOM = "\ufeff"


class AttachmentError(CaseFileError):
    """A file `hitl answer --file` will not attach; the message is one line naming it."""


def read_attachment(path: Path) -> tuple[str, str]:
    """(the file's base name, its text), or AttachmentError saying in one line why it cannot go."""
    shown = shown_path(path)
    too_long = f"{shown} is longer than {MAX_ATTACHMENT_CHARS:,} characters, the most an answer's attachment keeps"
    try:
        data = read_file_at_most(path, MAX_ATTACHMENT_BYTES, what="text", too_large="it " + too_long.removeprefix(f"{shown} "))
    except FileUnreadable as err:
        raise AttachmentError(str(err)) from None
    if b"\x00" in data:
        raise AttachmentError(f"{shown} is a binary file; attach a text file (UTF-8)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AttachmentError(f"{shown} is not UTF-8 text (byte {err.start}); attach a text file (UTF-8)") from None
    text = text.removeprefix(_BOM)
    if len(text) > MAX_ATTACHMENT_CHARS:
        raise AttachmentError(too_long)
    if not text.strip():
        raise AttachmentError(f"{shown} is empty")
    if problem := person_text_problem(text):
        raise AttachmentError(f"{shown}: {problem}")
    name = path.name
    if len(name) > MAX_ATTACHMENT_NAME_CHARS or one_visible_line_problem(name):
        limit = MAX_ATTACHMENT_NAME_CHARS
        raise AttachmentError(f"{shown}: the file's name must be one visible line of at most {limit} characters")
    return name, text


@click.command()
@state_dir_option
@click.argument("case")
@click.option("--text", required=True, help="The answer, in your words (required).")
@click.option(
    "--file",
    "attachment",
    type=click.Path(path_type=Path, dir_okay=True),
    default=None,
    help=f"Attach a UTF-8 text file (at most {MAX_ATTACHMENT_CHARS:,} characters).",
)
@click.option("--as", "person", default=None, help="Who answers: the person asked, or an operator (unless `hitl login` says).")
@pass_app
def answer(app: Application, case: str, text: str, attachment: Path | None, person: str | None) -> None:
    """Answer the question CASE (case ID, unique prefix or business key) waits on; the case then
    gathers again and returns to its gate with your answer in the brief."""
    app.settings  # noqa: B018 -- a configuration error comes first
    who = acting_person(app, person)
    if who is None:
        app.fail(f"give --as PERSON (who answers){login_hint(app)}")
    name, body = None, None
    if attachment is not None:
        try:
            name, body = read_attachment(attachment)
        except AttachmentError as err:
            app.fail(one_line(str(err)))
    try:
        sent = InfoAnswer(answerer=who, text=text, attachment_name=name, attachment_text=body)
    except ValidationError as err:
        app.fail(one_line(f"invalid answer: {validation_problems(err)}"))
    sent = sent.model_copy(update={"proof": proof_for(app, sent.answerer)})

    async def send() -> int:
        cases = await app.cases()
        case_id = await cases.resolve_case_id(case)
        receipt = await cases.answer_info(
            case_id,
            answerer=sent.answerer,
            text=sent.text,
            attachment=(name, body) if name is not None and body is not None else None,
            proof=sent.proof,
            timeout=DECISION_TIMEOUT_SECONDS,
        )
        click.echo(f"accepted: {one_line(receipt.message)}")
        return 0

    app.run(send)
