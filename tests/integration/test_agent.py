"""The advisory agent client against a real local HTTP server speaking the chat-completions API."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from activities.agent import (
    AgentAdvice,
    AgentUnavailable,
    agent_configured,
    request_agent_advice,
)
from tests.helpers import local_http_server
from workers.config import Settings
from workers.devstack import free_port

BRIEF = "## Renewal discount: acme_enterprise fy26\n\nRequested 18% against a 15% limit."
LABELS = ["crm: enterprise_arr", "crm: tier", "chat: approval_thread"]
FINDINGS = ["discount 18% exceeds the 15% limit for tier gold"]
VALID_ANSWER = {
    "summary_markdown": "**Acme** asks 18% on a $1.2M ARR renewal.",
    "proposed_outcome": "needs_human",
    "rationale": "Above the limit; the chat thread shows the sales VP supports it.",
    "cited_evidence": ["crm: enterprise_arr", "chat: approval_thread"],
}
WITHOUT_RATIONALE = {key: value for key, value in VALID_ANSWER.items() if key != "rationale"}


@pytest.fixture(scope="module")
def chat_server():
    with local_http_server() as server:
        yield server


@pytest.fixture
def agent(chat_server: HTTPServer):
    chat_server.clear()
    yield chat_server
    chat_server.clear()


def settings_for(server: HTTPServer | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_base_url": server.url_for("/v1") if server else None,
        "agent_model": "test-model",
        "agent_api_key": None,
        "agent_timeout_seconds": 5.0,
    }
    return Settings(**{**values, **overrides})


def completion(content: str | None, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content, **message}}
        ],
    }


def answer_with(**changes: Any) -> str:
    return json.dumps({**VALID_ANSWER, **changes})


async def ask(settings: Settings) -> AgentAdvice:
    return await request_agent_advice(
        settings, brief_markdown=BRIEF, evidence_labels=LABELS, policy_findings=FINDINGS
    )


async def test_valid_answer_becomes_advice_citing_given_evidence(agent: HTTPServer):
    agent.expect_request("/v1/chat/completions", method="POST").respond_with_json(completion(json.dumps(VALID_ANSWER)))

    advice = await ask(settings_for(agent, agent_api_key=SecretStr("sk-test-123")))

    assert advice == AgentAdvice.model_validate(VALID_ANSWER)
    [(request, _)] = agent.log
    assert request.headers["Authorization"] == "Bearer sk-test-123"
    sent = request.get_json()
    assert sent["model"] == "test-model"
    assert sent["temperature"] == 0
    assert sent["response_format"] == {"type": "json_object"}
    system, user = sent["messages"]
    assert system["role"] == "system"
    assert "You do not decide" in system["content"] and "ONLY one JSON object" in system["content"]
    assert user["role"] == "user"
    assert BRIEF in user["content"]
    assert json.dumps(LABELS) in user["content"]
    assert FINDINGS[0] in user["content"]


async def test_no_authorization_header_without_api_key(agent: HTTPServer):
    agent.expect_request("/v1/chat/completions", method="POST").respond_with_json(completion(json.dumps(VALID_ANSWER)))

    await ask(settings_for(agent))

    [(request, _)] = agent.log
    assert "Authorization" not in request.headers


def test_api_key_is_never_printed():
    settings = settings_for(None, agent_api_key=SecretStr("sk-secret-value"))
    assert "sk-secret-value" not in repr(settings) and "sk-secret-value" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        pytest.param(
            lambda r: r.respond_with_data("overloaded", status=503),
            "agent answered HTTP 503: 'overloaded'",
            id="http-503",
        ),
        pytest.param(
            lambda r: r.respond_with_json({"error": "bad key"}, status=401),
            "agent answered HTTP 401",
            id="http-401",
        ),
        pytest.param(
            lambda r: r.respond_with_data("<html>gateway</html>", content_type="text/html"),
            "agent response is not JSON: '<html>gateway</html>'",
            id="body-not-json",
        ),
        pytest.param(
            lambda r: r.respond_with_json({"object": "chat.completion"}),
            "agent response is not a chat completion: choices: Field required",
            id="no-choices",
        ),
        pytest.param(
            lambda r: r.respond_with_json({"choices": []}),
            "agent response is not a chat completion: choices: List should have at least 1 item",
            id="empty-choices",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion(None, refusal="I can't help with that.")),
            "agent gave no answer: refused: I can't help with that.",
            id="refusal",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion("Sure! I propose to approve.")),
            "agent answer is not JSON",
            id="content-not-json",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion(answer_with(proposed_outcome="approved"))),
            "agent answer failed validation: proposed_outcome: Input should be 'approve', 'reject' or 'needs_human'",
            id="bad-outcome",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion(json.dumps(WITHOUT_RATIONALE))),
            "agent answer failed validation: rationale: Field required",
            id="missing-field",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion(answer_with(confidence=0.9))),
            "agent answer failed validation: confidence: Extra inputs are not permitted",
            id="extra-field",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion(answer_with(summary_markdown="x" * 4001))),
            "agent answer failed validation: summary_markdown: String should have at most 4000 characters",
            id="summary-too-long",
        ),
        pytest.param(
            lambda r: r.respond_with_json(completion("[]")),
            "agent answer failed validation: answer: Input should be a valid dictionary",
            id="answer-not-object",
        ),
        pytest.param(
            lambda r: r.respond_with_json(
                completion(answer_with(cited_evidence=["crm: tier", "finance: budget_left"]))
            ),
            "agent cited evidence it was not given: 'finance: budget_left'",
            id="unknown-citation",
        ),
    ],
)
async def test_unusable_answer_raises_agent_unavailable_naming_the_problem(agent: HTTPServer, respond, expected: str):
    respond(agent.expect_request("/v1/chat/completions", method="POST"))

    with pytest.raises(AgentUnavailable) as raised:
        await ask(settings_for(agent))

    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert len(agent.log) == 1


async def test_slow_agent_raises_agent_unavailable_after_the_timeout(agent: HTTPServer):
    def slow(_: Request) -> Response:
        time.sleep(2)
        return Response(json.dumps(completion(json.dumps(VALID_ANSWER))), content_type="application/json")

    agent.expect_request("/v1/chat/completions", method="POST").respond_with_handler(slow)

    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match=r"agent did not answer within 0\.3s"):
        await ask(settings_for(agent, agent_timeout_seconds=0.3))
    assert time.monotonic() - started < 1.5


async def test_unreachable_agent_raises_agent_unavailable():
    nobody = f"http://127.0.0.1:{free_port()}/v1"

    reason = r"cannot reach agent at http://127\.0\.0\.1:\d+/v1/chat/completions: ConnectError"
    with pytest.raises(AgentUnavailable, match=reason):
        await ask(settings_for(None, agent_base_url=nobody))


async def test_unconfigured_agent_raises_without_any_request(agent: HTTPServer):
    settings = settings_for(None)

    assert not agent_configured(settings)
    with pytest.raises(AgentUnavailable, match="agent not configured: set HITL_AGENT_BASE_URL"):
        await ask(settings)
    assert agent.log == []


def test_agent_configured_by_base_url(agent: HTTPServer):
    assert agent_configured(settings_for(agent))
