"""`hitl request-info --ask`, `hitl inbox --awaiting-info`, `hitl answer` and `hitl show` as a user
runs them, on the session's real dev server, a real worker, a seeded PostgreSQL and a real local SMTP
server: a reviewer asks someone a question, that person gets it by email and in the outbox with
working links, answers, the case returns to the gate with the answer, the reviewer approves, and the
requester is told the decision once. Then what `hitl answer` refuses, in one line, sending nothing."""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from demo.examples import example
from gates.bounds import MAX_ATTACHMENT_CHARS
from gates.cases import CaseKind
from gates.trace import CaseState
from tests.case_helpers import case_view, start_case, wait_until_waiting
from tests.helpers import assert_eventually, new_worker, run_hitl
from tests.integration.test_notify_channels import SmtpServer
from workers.config import Settings

UI = "http://temporal-ui.example:8233"
QUESTION = "Which contract promised the 28%? Paste the clause."
ANSWER = "The 2025 MSA, clause 4.2; the text is attached."


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def worker_settings(smtp: SmtpServer) -> Settings:
    return Settings(
        _env_file=None,
        database_url=None,
        identity="asserted",
        ui_base_url=UI,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="HITL <hitl@example.com>",
        smtp_starttls=False,
    )


def mail_to(smtp: SmtpServer, address: str) -> list:
    return [message for to, message in smtp.inbox.received if address in to]


def opened_case(link: str) -> str:
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == UI
    prefix = "/namespaces/default/workflows/"
    assert parts.path.startswith(prefix) and "/" not in parts.path.removeprefix(prefix), "the ID is one path segment"
    return unquote(parts.path.removeprefix(prefix))


@pytest.mark.timeout(180)
async def test_a_question_reaches_the_person_asked_who_answers_and_the_reviewer_approves_on_the_answer(
    temporal_env, world_pool, cli_env, smtp, tmp_path
):
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{uuid.uuid4().hex[:8]}")
    notes = tmp_path / "msa-clause.txt"
    notes.write_text("4.2 Discounts: a service credit of up to 28% applies to the fy26 renewal.\n")
    async with new_worker(temporal_env.client, world_pool, settings=worker_settings(smtp)) as worker:
        env = {**cli_env(worker.task_queue), "HITL_UI_BASE_URL": UI}
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)

        asked = await run_hitl(
            env, "request-info", request.business_key(), "--as", "fin_rev_ana", "--reason", QUESTION, "--ask", "ae_jordan"
        )
        assert asked.returncode == 0, asked.stderr
        assert asked.stdout.startswith("accepted: request_info by fin_rev_ana")

        # the person asked gets the question by email, with the link and the commands
        await assert_eventually(lambda: len(mail_to(smtp, "jordan.blake@example.com")) == 1, timeout=30)
        [mail] = mail_to(smtp, "jordan.blake@example.com")
        body = mail.get_content().replace("\r\n", "\n")
        assert handle.id in mail["Subject"] and mail["Subject"].startswith("[hitl] Information requested:")
        assert f"fin_rev_ana wrote (question):\n> {QUESTION}" in body
        [link] = [word for word in body.split() if word.startswith(UI)]
        assert opened_case(link) == handle.id
        typed = [shlex.split(line.strip()) for line in body.splitlines() if line.strip().startswith("hitl ")]
        assert ["hitl", "show", handle.id] in typed and typed[-1][:3] == ["hitl", "answer", handle.id]
        [outbox] = await world_pool.fetch(
            "SELECT payload FROM notifications WHERE case_id = $1 AND kind = 'info_requested'", handle.id
        )
        assert json.loads(outbox["payload"])["links"]["ui"] == link

        # the inbox of questions says who is asked
        async def listed() -> dict:
            shown = await run_hitl(env, "inbox", "--awaiting-info", "--json")
            assert shown.returncode == 0, shown.stderr
            [item] = [i for i in json.loads(shown.stdout) if i["case_id"] == handle.id]
            return item

        item = await assert_eventually(listed, timeout=30)
        assert (item["asked"], item["asked_by"], item["question"]) == ("ae_jordan", "fin_rev_ana", QUESTION)
        table = await run_hitl(env, "inbox", "--awaiting-info", "--asked", "ae_jordan")
        [row] = [line for line in table.stdout.splitlines() if line.startswith(handle.id)]
        assert "ae_jordan" in row and "fin_rev_ana" in row and "due in 1d" in row

        shown = await run_hitl(env, "show", handle.id)
        assert "state: awaiting_info" in shown.stdout and "asked: ae_jordan" in shown.stdout
        assert f"answer with: hitl answer {handle.id} --as ae_jordan --text ..." in shown.stdout

        # someone else may not answer; the person asked does
        other = await run_hitl(env, "answer", handle.id, "--as", "fin_rev_ben", "--text", "not mine to say")
        assert other.returncode == 1 and other.stderr.startswith("hitl: refused: "), other.stderr
        assert len(other.stderr.strip().splitlines()) == 1
        answered = await run_hitl(
            env, "answer", request.business_key(), "--as", "ae_jordan", "--text", ANSWER, "--file", str(notes)
        )
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.startswith("accepted: ")

        # back at the gate, with the answer in the brief and the round in `hitl show`
        back = await wait_until_waiting(handle, round_no=2)
        assert ANSWER in (back.brief or "")
        shown = await run_hitl(env, "show", handle.id)
        assert "-> answered by ae_jordan at " in shown.stdout and f"“{ANSWER}” (attached “msa-clause.txt”" in shown.stdout
        approved = await run_hitl(env, "approve", handle.id, "--as", "fin_rev_ana", "--reason", "The MSA clause covers it")
        assert approved.returncode == 0, approved.stderr
        result = await handle.result()
        assert result.outcome == "approve"

        # the requester (ae_sam) is told, once
        await assert_eventually(lambda: len(mail_to(smtp, "samantha.reyes@example.com")) == 1, timeout=30)

    [decided] = mail_to(smtp, "samantha.reyes@example.com")
    assert decided["Subject"].startswith("[hitl] Decided:") and handle.id in decided["Subject"]
    assert "fin_rev_ana wrote (reason):\n> The MSA clause covers it" in decided.get_content().replace("\r\n", "\n")
    rows = await world_pool.fetch("SELECT kind FROM notifications WHERE case_id = $1 AND kind = 'decided'", handle.id)
    assert len(rows) == 1


# -- what `hitl answer` refuses ---------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    huge = tmp_path / "huge.txt"
    huge.write_text("x" * (MAX_ATTACHMENT_CHARS + 1))
    binary = tmp_path / "scan.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    return {"huge": huge, "binary": binary}


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("CASE", "--as", "ae_jordan"), 2, "Missing option '--text'"),
        (("CASE", "--as", "ae_jordan", "--text", "   "), 2, "hitl: invalid answer: text"),
        (("CASE", "--as", "ae_jordan", "--text", "ok", "--file", "{huge}"), 2, "the most an answer's attachment keeps"),
        (("CASE", "--as", "ae_jordan", "--text", "ok", "--file", "{binary}"), 2, "is a binary file; attach a text file (UTF-8)"),
        (("no_such_account/fy99", "--as", "ae_jordan", "--text", "ok"), 1, "hitl: no case matching no_such_account/fy99"),
        (("CASE", "--text", "ok"), 2, "hitl: give --as PERSON (who answers)"),
    ],
    ids=["no-text", "blank-text", "huge-file", "binary-file", "unknown-case", "nobody"],
)
async def test_hitl_answer_refuses_bad_input_in_one_line(cli_env, files, args, code, says):
    argv = [a.format(**files) for a in args]
    argv = [("renewal_discount_exception:acme_enterprise/fy26" if a == "CASE" else a) for a in argv]

    result = await run_hitl(cli_env("unused-answer-errors"), "answer", *argv)

    assert result.returncode == code, result.stderr
    assert says in result.stderr and result.stdout == ""
    if code != 2 or "Missing option" not in says:  # click's own usage error has its usage lines
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_an_answer_to_a_case_that_asked_nothing_is_refused_by_the_case(temporal_env, world_pool, cli_env):
    request = example(CaseKind.PROCUREMENT, human=True)
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)
        result = await run_hitl(cli_env(worker.task_queue), "answer", handle.id, "--as", "buyer_pat", "--text", "unasked")
        view = await case_view(handle)
        await handle.terminate("test over")

    assert result.returncode == 1 and result.stderr.startswith("hitl: refused: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert view.state == CaseState.WAITING and view.info_rounds == [], "nothing written"


# -- `hitl answer` in verified mode -----------------------------------------------------------------------


async def test_in_verified_mode_only_the_person_asked_answers_with_a_proof(temporal_env, world_pool, cli_env, tmp_path):
    """A proof from the worker's local issuer names who answers: someone else's valid proof is refused,
    an answer with no proof is refused, each in one line and changing nothing; the person asked is accepted."""
    verified = Settings(_env_file=None, database_url=None, identity="verified", state_dir=tmp_path / "state")
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{uuid.uuid4().hex[:8]}")
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli_env(worker.task_queue) | {
            "HITL_IDENTITY": "verified",
            "HITL_STATE_DIR": str(verified.state_dir),
            "HITL_CONFIG_DIR": str(tmp_path / "config"),
        }
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)
        asked = await run_hitl(env, "request-info", handle.id, "--as", "fin_rev_ana", "--reason", QUESTION, "--ask", "ae_jordan")
        assert asked.returncode == 0, asked.stderr

        async def awaiting_info():
            view = await case_view(handle)
            assert view.state == CaseState.AWAITING_INFO, view.state
            return view

        await assert_eventually(awaiting_info, timeout=30)

        other = await run_hitl(env, "answer", handle.id, "--as", "fin_rev_ben", "--text", "not mine to say")
        assert other.returncode == 1, other.stderr
        assert other.stderr.startswith("hitl: refused: ") and "fin_rev_ben" in other.stderr, other.stderr
        assert len(other.stderr.strip().splitlines()) == 1, other.stderr
        unproven = {**env, "HITL_IDENTITY": "asserted"}  # this CLI attaches no proof
        no_proof = await run_hitl(unproven, "answer", handle.id, "--as", "ae_jordan", "--text", ANSWER)
        assert no_proof.returncode == 1, no_proof.stderr
        assert no_proof.stderr.startswith("hitl: "), no_proof.stderr
        assert "proof" in no_proof.stderr, no_proof.stderr
        assert len(no_proof.stderr.strip().splitlines()) == 1, no_proof.stderr
        view = await awaiting_info()
        assert view.info_rounds[-1].answer is None, "neither refused answer was kept"

        answered = await run_hitl(env, "answer", handle.id, "--as", "ae_jordan", "--text", ANSWER)
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.startswith("accepted: ")
        back = await wait_until_waiting(handle, round_no=2)
        assert ANSWER in (back.brief or "")
        await handle.terminate("test over")
