"""Connectors and the gather/directory activities.

Local connectors read the demo world seeded into the shared test database (seeding is
idempotent, so whichever test module seeds first wins and the rest reuse it). HTTP connectors
talk to a real HTTP server on 127.0.0.1 (pytest-httpserver, threaded so a slow handler does
not hold up the next request).
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
import pytest_asyncio
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from werkzeug import Request, Response

from activities.connectors import (
    Connector,
    HttpConnector,
    LocalConnector,
    TransientSourceError,
)
from activities.directory import DirectoryActivities
from activities.gather import GatherActivities
from demo.world import seed_demo_world
from gates.evidence import SOURCES, ConnectorResult, SourceRequest
from gates.messages import RosterRequest
from tests.helpers import local_http_server
from workers.config import Settings
from workers.devstack import free_port

CRM_ITEMS = ["enterprise_arr", "tier", "contract_terms", "account_owner", "open_incidents", "service_impact"]


@pytest_asyncio.fixture(scope="module")
async def world(db_pool):
    async with db_pool.acquire() as conn:
        await seed_demo_world(conn)
    return db_pool


@pytest.fixture(scope="module")
def source_server():
    with local_http_server() as server:
        yield server


@pytest.fixture
def http_source(source_server: HTTPServer):
    source_server.clear()
    yield source_server
    source_server.clear()


def crm(account: str = "acme_enterprise", items: list[str] | None = None) -> SourceRequest:
    return SourceRequest(source="crm", key={"account": account}, items=items or CRM_ITEMS)


def values(result: ConnectorResult) -> dict:
    return {e.item: e.value for e in result.items}


def errors(result: ConnectorResult) -> dict[str, str]:
    return {m.item: m.error for m in result.missing}


# --- Local connector -----------------------------------------------------------------------------


async def test_local_crm_reports_acme_arr_and_recent_service_impact(world):
    result = await LocalConnector(world).fetch(crm())
    assert result.missing == []
    found = values(result)
    assert found["enterprise_arr"] == 1_200_000 and type(found["enterprise_arr"]) is int
    assert found["service_impact"] is True
    assert found["tier"] == "enterprise"
    assert found["account_owner"] == "ae_sam"
    assert found["open_incidents"] == 1
    assert "uptime SLA" in found["contract_terms"]
    assert {e.ref for e in result.items} == {"crm:acme_enterprise"}


@pytest.mark.parametrize(
    ("account", "expected"),
    [("hooli", False), ("oscorp", False), ("tyrell_robotics", True), ("soylent_foods", False)],
    ids=["sev1-over-180-days-ago", "sev1-not-service-impacting", "open-sev2", "no-incidents"],
)
async def test_local_crm_service_impact_needs_a_recent_impacting_sev1_or_sev2(world, account, expected):
    result = await LocalConnector(world).fetch(crm(account, ["service_impact"]))
    assert values(result) == {"service_impact": expected}


async def test_local_crm_unknown_account_makes_every_item_missing(world):
    result = await LocalConnector(world).fetch(crm("no_such_account", ["enterprise_arr", "tier"]))
    assert result.items == []
    assert errors(result) == {"enterprise_arr": "not found in crm", "tier": "not found in crm"}


async def test_local_connector_returns_only_asked_items_and_flags_unknown_ones(world):
    result = await LocalConnector(world).fetch(crm(items=["tier", "favourite_colour"]))
    assert values(result) == {"tier": "enterprise"}
    assert errors(result) == {"favourite_colour": "unknown item"}


async def test_local_connector_reports_an_incomplete_key_as_missing(world):
    request = SourceRequest(source="iam", key={"user": "eng_lee"}, items=["subject_active"])
    result = await LocalConnector(world).fetch(request)
    assert "lacks system, entitlement" in errors(result)["subject_active"]


async def test_local_chat_summarises_the_vp_approval_thread(world):
    request = SourceRequest(source="chat", key={"thread": "vp_approval_thread"}, items=["vp_approval_thread"])
    result = await LocalConnector(world).fetch(request)
    thread = values(result)["vp_approval_thread"]
    assert thread["approval_stated_by"] == "vp_sales_lee"
    assert "3-year extension" in thread["customer_commitment"]
    assert thread["channel"] == "#deal-desk-acme"
    assert thread["messages"] == 5
    assert thread["participants"] == ["ae_sam", "vp_sales_lee"]
    assert datetime.fromisoformat(thread["last_message_at"]) < datetime.now().astimezone()


async def test_local_chat_item_must_be_the_thread_and_thread_must_exist(world):
    connector = LocalConnector(world)
    other = await connector.fetch(SourceRequest(source="chat", key={"thread": "vp_approval_thread"}, items=["summary"]))
    assert errors(other) == {"summary": "unknown item"}
    gone = await connector.fetch(SourceRequest(source="chat", key={"thread": "no_thread"}, items=["no_thread"]))
    assert errors(gone) == {"no_thread": "not found in chat"}


async def test_local_chat_thread_without_approval_has_nulls(world):
    request = SourceRequest(source="chat", key={"thread": "globex_renewal_thread"}, items=["globex_renewal_thread"])
    thread = values(await LocalConnector(world).fetch(request))["globex_renewal_thread"]
    assert thread["approval_stated_by"] is None and thread["customer_commitment"] is None


async def test_local_vendor_master_knows_status_preference_and_spend(world):
    connector = LocalConnector(world)
    items = ["vendor_status", "risk_rating", "preferred", "ytd_spend_usd"]
    northwind = values(
        await connector.fetch(SourceRequest(source="vendor_master", key={"vendor": "northwind_cloud"}, items=items))
    )
    assert northwind == {
        "vendor_status": "approved",
        "risk_rating": "low",
        "preferred": True,
        "ytd_spend_usd": 412000.0,
    }
    tailspin = values(
        await connector.fetch(SourceRequest(source="vendor_master", key={"vendor": "tailspin_supplies"}, items=items))
    )
    assert tailspin["vendor_status"] == "blocked" and tailspin["ytd_spend_usd"] == 0.0
    quantum = values(
        await connector.fetch(SourceRequest(source="vendor_master", key={"vendor": "quantum_analytics"}, items=items))
    )
    assert quantum["vendor_status"] == "onboarding" and quantum["preferred"] is False


async def test_local_finance_reads_this_years_budget(world):
    connector = LocalConnector(world)
    items = ["budget_total_usd", "budget_remaining_usd", "budget_owner"]
    marketing = await connector.fetch(SourceRequest(source="finance", key={"cost_centre": "marketing"}, items=items))
    assert values(marketing) == {
        "budget_total_usd": 250000.0,
        "budget_remaining_usd": 4200.0,
        "budget_owner": "coo_mia",
    }
    unknown = await connector.fetch(SourceRequest(source="finance", key={"cost_centre": "moonshots"}, items=items))
    assert set(errors(unknown).values()) == {"not found in finance"}


async def test_local_procurement_counts_prior_purchases(world):
    connector = LocalConnector(world)
    items = ["prior_purchases", "largest_prior_purchase_usd"]
    northwind = await connector.fetch(
        SourceRequest(source="procurement", key={"vendor": "northwind_cloud"}, items=items)
    )
    assert values(northwind) == {"prior_purchases": 4, "largest_prior_purchase_usd": 240000.0}
    new_vendor = await connector.fetch(
        SourceRequest(source="procurement", key={"vendor": "quantum_analytics"}, items=items)
    )
    assert values(new_vendor) == {"prior_purchases": 0, "largest_prior_purchase_usd": 0.0}
    unknown = await connector.fetch(SourceRequest(source="procurement", key={"vendor": "nobody_inc"}, items=items))
    assert set(errors(unknown).values()) == {"not found in procurement"}


async def test_local_iam_describes_subject_entitlements_owners_and_exceptions(world):
    items = ["subject_active", "subject_manager", "current_entitlements", "entitlement_owners", "prior_exceptions"]
    request = SourceRequest(
        source="iam", key={"user": "eng_lee", "system": "prod_db", "entitlement": "admin"}, items=items
    )
    found = values(await LocalConnector(world).fetch(request))
    assert found["subject_active"] is True
    assert found["subject_manager"] == "eng_mgr_priya"
    assert "prod_db:read_only" in found["current_entitlements"]
    assert "prod_db:admin" not in found["current_entitlements"]  # the earlier temporary grant expired
    assert found["entitlement_owners"] == ["eng_mgr_priya", "sec_lead_noor"]
    assert found["prior_exceptions"] == 2


async def test_local_iam_entitlement_without_owner_is_missing_not_empty(world):
    request = SourceRequest(
        source="iam",
        key={"user": "eng_lee", "system": "mainframe", "entitlement": "root"},
        items=["entitlement_owners", "prior_exceptions"],
    )
    result = await LocalConnector(world).fetch(request)
    assert values(result) == {"prior_exceptions": 0}
    assert errors(result) == {"entitlement_owners": "no active owner recorded for mainframe:root in iam"}


async def test_local_iam_unknown_user_is_not_found(world):
    request = SourceRequest(
        source="iam", key={"user": "ghost", "system": "aws", "entitlement": "admin"}, items=["subject_active"]
    )
    assert errors(await LocalConnector(world).fetch(request)) == {"subject_active": "not found in iam"}


# --- HTTP connector ------------------------------------------------------------------------------


def http_connector(server: HTTPServer, timeout: float = 5.0) -> HttpConnector:
    return HttpConnector(server.url_for("/api/"), timeout)


async def test_http_connector_returns_validated_items_and_the_ref(http_source: HTTPServer):
    http_source.expect_request(
        "/api/crm", query_string={"account": "acme_enterprise", "items": "enterprise_arr,tier,service_impact"}
    ).respond_with_json(
        {
            "items": {"enterprise_arr": 1_300_000, "tier": "enterprise", "service_impact": True},
            "ref": "https://crm.example/acme",
        }
    )
    result = await http_connector(http_source).fetch(crm(items=["enterprise_arr", "tier", "service_impact"]))
    assert result.missing == []
    assert values(result) == {"enterprise_arr": 1_300_000, "tier": "enterprise", "service_impact": True}
    assert {e.ref for e in result.items} == {"https://crm.example/acme"}
    assert isinstance(HttpConnector("http://x", 1.0), Connector)


async def test_http_5xx_raises_transient_and_a_retry_succeeds(http_source: HTTPServer):
    http_source.expect_oneshot_request("/api/crm").respond_with_data("upstream down", status=500)
    http_source.expect_request("/api/crm").respond_with_json({"items": {"tier": "enterprise"}})
    connector = http_connector(http_source)
    with pytest.raises(TransientSourceError, match="HTTP 500"):
        await connector.fetch(crm(items=["tier"]))
    retried = await connector.fetch(crm(items=["tier"]))
    assert values(retried) == {"tier": "enterprise"}


async def test_http_429_is_transient(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_data("slow down", status=429)
    with pytest.raises(TransientSourceError, match="HTTP 429"):
        await http_connector(http_source).fetch(crm(items=["tier"]))


async def test_http_404_makes_every_item_missing(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_json({"error": "no such account"}, status=404)
    result = await http_connector(http_source).fetch(crm(items=["tier", "enterprise_arr"]))
    assert errors(result) == {"tier": "not found in crm (HTTP 404)", "enterprise_arr": "not found in crm (HTTP 404)"}


async def test_http_other_4xx_is_permanent_and_missing(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_data("bad key", status=400)
    result = await http_connector(http_source).fetch(crm(items=["tier"]))
    assert errors(result) == {"tier": "crm refused the request: HTTP 400: bad key"}


async def test_http_non_json_answer_is_malformed(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_data("<html>login</html>", content_type="text/html")
    result = await http_connector(http_source).fetch(crm(items=["tier"]))
    assert errors(result)["tier"].startswith("malformed answer from crm: not JSON")


async def test_http_answer_of_the_wrong_shape_is_malformed(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_json({"tier": "enterprise"})
    result = await http_connector(http_source).fetch(crm(items=["tier"]))
    assert errors(result)["tier"].startswith("malformed answer from crm: expected")
    assert "items: Field required" in errors(result)["tier"]


async def test_http_wrong_type_for_one_item_drops_only_that_item(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_json(
        {"items": {"enterprise_arr": "1.2M", "tier": "enterprise", "open_incidents": "3"}}
    )
    result = await http_connector(http_source).fetch(crm(items=["enterprise_arr", "tier", "open_incidents"]))
    assert values(result) == {"tier": "enterprise"}
    assert errors(result) == {
        "enterprise_arr": "malformed answer from crm: enterprise_arr: Input should be a valid integer",
        "open_incidents": "malformed answer from crm: open_incidents: Input should be a valid integer",
    }


async def test_http_chat_thread_is_validated_field_by_field(http_source: HTTPServer):
    thread = {
        "channel": "#deal-desk",
        "title": "t",
        "messages": "five",
        "participants": ["a"],
        "approval_stated_by": None,
        "customer_commitment": None,
        "last_message_at": "2026-01-02T03:04:05Z",
    }
    http_source.expect_request("/api/chat", query_string={"thread": "t1", "items": "t1"}).respond_with_json(
        {"items": {"t1": thread}}
    )
    result = await http_connector(http_source).fetch(SourceRequest(source="chat", key={"thread": "t1"}, items=["t1"]))
    assert errors(result) == {"t1": "malformed answer from chat: t1: messages: Input should be a valid integer"}


async def test_http_item_absent_from_the_answer_is_not_returned(http_source: HTTPServer):
    http_source.expect_request("/api/crm").respond_with_json({"items": {"tier": "growth"}})
    result = await http_connector(http_source).fetch(crm(items=["tier", "enterprise_arr"]))
    assert values(result) == {"tier": "growth"}
    assert errors(result) == {"enterprise_arr": "not returned by crm"}


async def test_http_unknown_items_are_not_asked_for(http_source: HTTPServer):
    http_source.expect_request(
        "/api/crm", query_string={"account": "acme_enterprise", "items": "tier"}
    ).respond_with_json({"items": {"tier": "growth"}})
    result = await http_connector(http_source).fetch(crm(items=["tier", "shoe_size"]))
    assert values(result) == {"tier": "growth"}
    assert errors(result) == {"shoe_size": "unknown item"}


async def test_http_source_slower_than_the_timeout_is_transient(http_source: HTTPServer):
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(json.dumps({"items": {"tier": "late"}}), content_type="application/json")

    http_source.expect_request("/api/crm").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="did not answer within 0.2s"):
        await http_connector(http_source, timeout=0.2).fetch(crm(items=["tier"]))
    assert time.monotonic() - started < 0.9


async def test_http_unreachable_source_is_transient():
    connector = HttpConnector(f"http://127.0.0.1:{free_port()}/api", 1.0)
    with pytest.raises(TransientSourceError, match="cannot reach crm"):
        await connector.fetch(crm(items=["tier"]))


# --- Activities and settings ---------------------------------------------------------------------


def activity_name(fn) -> str:
    return activity._Definition.must_from_callable(fn).name


async def test_gather_uses_http_for_configured_sources_and_the_world_for_the_rest(world, http_source: HTTPServer):
    http_source.expect_request("/crm-api/crm").respond_with_json({"items": {"tier": "from-http"}})
    gather = GatherActivities(world, Settings(connector_urls={"crm": http_source.url_for("/crm-api")}))
    env = ActivityEnvironment()
    from_http = await env.run(gather.gather_crm, crm(items=["tier"]))
    assert values(from_http) == {"tier": "from-http"}
    chat = SourceRequest(source="chat", key={"thread": "vp_approval_thread"}, items=["vp_approval_thread"])
    from_world = await env.run(gather.gather_chat, chat)
    assert values(from_world)["vp_approval_thread"]["approval_stated_by"] == "vp_sales_lee"


async def test_gather_turns_a_transient_failure_into_a_retryable_application_error(world, http_source: HTTPServer):
    http_source.expect_request("/crm-api/crm").respond_with_data("maintenance", status=503)
    gather = GatherActivities(world, Settings(connector_urls={"crm": http_source.url_for("/crm-api")}))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(gather.gather_crm, crm(items=["tier"]))
    assert raised.value.type == "TransientSourceError"
    assert raised.value.non_retryable is False
    assert "HTTP 503" in str(raised.value)


async def test_gather_returns_permanent_failures_as_missing_context(world, http_source: HTTPServer):
    http_source.expect_request("/crm-api/crm").respond_with_data("nope", status=404)
    gather = GatherActivities(world, Settings(connector_urls={"crm": http_source.url_for("/crm-api")}))
    result = await ActivityEnvironment().run(gather.gather_crm, crm(items=["tier"]))
    assert errors(result) == {"tier": "not found in crm (HTTP 404)"}


async def test_a_quick_attempt_reports_the_answer_or_why_the_source_is_asked_again(world, http_source: HTTPServer):
    """A case's opening read asks each source once and briefly; whatever goes wrong is reported, not raised."""

    def slow(request: Request) -> Response:
        time.sleep(3.0)
        return Response(json.dumps({"items": {"tier": "late"}}), content_type="application/json")

    http_source.expect_request("/failing/crm").respond_with_data("maintenance", status=503)
    http_source.expect_request("/crm-api/crm").respond_with_handler(slow)
    failing_gather = GatherActivities(world, Settings(connector_urls={"crm": http_source.url_for("/failing")}))
    slow_gather = GatherActivities(world, Settings(connector_urls={"crm": http_source.url_for("/crm-api")}))
    chat = SourceRequest(source="chat", key={"thread": "vp_approval_thread"}, items=["vp_approval_thread"])

    failing = await failing_gather.attempt(crm(items=["tier"]), within=10.0)
    assert failing.result is None and failing.error is not None and "HTTP 503" in failing.error
    answered = await slow_gather.attempt(chat, within=10.0)
    assert answered.error is None and answered.result is not None
    assert values(answered.result)["vp_approval_thread"]["approval_stated_by"] == "vp_sales_lee"
    started = time.monotonic()
    late = await slow_gather.attempt(crm(items=["tier"]), within=0.2)
    assert (late.result, late.error) == (None, "crm did not answer within 0.2s")
    assert time.monotonic() - started < 2.5, "the attempt is not waited out"


async def test_gather_registers_one_activity_per_source(world):
    gather = GatherActivities(world, Settings())
    assert [activity_name(fn) for fn in gather.activities()] == [f"gather_{source}" for source in SOURCES]
    mismatched = await gather.gather_finance(crm(items=["tier"]))
    assert errors(mismatched) == {"tier": "a request for crm was sent to gather_finance"}


def test_connector_urls_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("HITL_CONNECTOR_URLS", '{"crm": "http://crm.internal/api"}')
    monkeypatch.setenv("HITL_CONNECTOR_TIMEOUT_SECONDS", "2.5")
    settings = Settings()
    assert settings.connector_urls == {"crm": "http://crm.internal/api"}
    assert settings.connector_timeout_seconds == 2.5


def test_connector_urls_for_an_unknown_source_are_rejected(monkeypatch):
    monkeypatch.setenv("HITL_CONNECTOR_URLS", '{"crmm": "http://crm.internal/api"}')
    with pytest.raises(ValidationError, match="unknown source\\(s\\) crmm; known: crm, chat"):
        Settings()


async def test_roster_lists_active_members_of_finance_reviewers(world):
    directory = DirectoryActivities(world)
    roster = await ActivityEnvironment().run(
        directory.load_reviewer_roster,
        RosterRequest(groups=["finance_reviewers", "finance_directors", "no_such_group"]),
    )
    assert roster.members["finance_reviewers"] == ["fin_rev_ana", "fin_rev_ben"]  # fin_rev_greta has left
    assert roster.members["finance_directors"] == ["fin_dir_lina", "fin_dir_omar"]
    assert roster.members["no_such_group"] == []
    assert roster.people["fin_rev_ana"] == "Ana Costa"
    assert "fin_rev_greta" not in roster.people


def test_connectors_package_exports_the_port_and_both_implementations():
    from activities import connectors

    assert {"Connector", "LocalConnector", "HttpConnector", "TransientSourceError", "SCHEMAS"} <= set(connectors.__all__)
    assert all(hasattr(connectors, name) for name in connectors.__all__)
    assert set(connectors.SCHEMAS) == set(SOURCES)
