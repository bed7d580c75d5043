"""Seeding the demo world.

Each test seeds a brand-new database of its own (conftest's `empty_database_url`, migrated
here) rather than the shared one: other tests seed the shared database for their own reads,
so only a private database is guaranteed to start empty, and two seeders racing there cannot
disturb anyone else.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest_asyncio

from activities.migrations import apply_migrations
from demo.world import ACCOUNTS, PAST_DECISIONS, seed_demo_world
from gates.cases import CaseKind, case_id_for

GROUPS = {
    "finance_reviewers",
    "finance_directors",
    "cfo_office",
    "ops_reviewers",
    "ops_vp_approvers",
    "coo_office",
    "security_reviewers",
    "security_leads",
    "ciso_office",
}
NAMED_PEOPLE = {
    "fin_rev_ana",
    "fin_dir_omar",
    "cfo_jane",
    "ops_rev_kim",
    "vp_ops_raj",
    "coo_mia",
    "sec_rev_eli",
    "sec_lead_noor",
    "ciso_sam",
    "ae_sam",
    "buyer_pat",
    "eng_lee",
    "it_admin_kai",
    "vp_sales_lee",
}
COUNTED_TABLES = [
    "world_people",
    "world_reviewer_groups",
    "world_group_members",
    "world_accounts",
    "world_incidents",
    "world_chat_threads",
    "world_chat_messages",
    "world_vendors",
    "world_vendor_spend",
    "world_budgets",
    "world_purchases",
    "world_entitlements",
    "world_entitlement_owners",
    "world_access_exceptions",
    "decision_traces",
    "precedents",
]


@pytest_asyncio.fixture
async def world_dsn(empty_database_url: str):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return empty_database_url


async def row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in COUNTED_TABLES}


async def test_seeding_an_empty_database_creates_acme_and_its_people(world_dsn: str):
    conn = await asyncpg.connect(world_dsn)
    try:
        assert await seed_demo_world(conn) is True
        acme = await conn.fetchrow("SELECT * FROM world_accounts WHERE account_id = 'acme_enterprise'")
        assert acme["tier"] == "enterprise"
        assert acme["enterprise_arr_usd"] == 1_200_000
        assert acme["account_owner"] == "ae_sam"
        sev1 = await conn.fetchval(
            """SELECT count(*) FROM world_incidents WHERE account_id = 'acme_enterprise' AND severity = 'sev1'
                AND service_impacting AND opened_at > now() - interval '60 days'"""
        )
        assert sev1 == 1
        people = {r["person_id"] for r in await conn.fetch("SELECT person_id FROM world_people")}
        assert NAMED_PEOPLE <= people
        assert 20 <= len(people) <= 35
    finally:
        await conn.close()


async def test_seeding_creates_all_nine_reviewer_groups_with_members(world_dsn: str):
    conn = await asyncpg.connect(world_dsn)
    try:
        await seed_demo_world(conn)
        rows = await conn.fetch(
            """SELECT g.group_id, g.gate, count(m.person_id) AS members
                 FROM world_reviewer_groups g LEFT JOIN world_group_members m USING (group_id)
                GROUP BY g.group_id, g.gate"""
        )
        assert {r["group_id"] for r in rows} == GROUPS
        assert all(2 <= r["members"] <= 3 for r in rows), rows
        gates = {r["group_id"]: r["gate"] for r in rows}
        assert (
            gates["cfo_office"] == "finance"
            and gates["ops_vp_approvers"] == "ops"
            and gates["ciso_office"] == "security"
        )
        vp_ops = await conn.fetchval(
            "SELECT count(*) FROM world_group_members WHERE group_id = 'ops_vp_approvers' AND person_id = 'vp_ops_raj'"
        )
        assert vp_ops == 1
    finally:
        await conn.close()


async def test_seeding_records_approved_service_impact_renewal_precedents(world_dsn: str):
    conn = await asyncpg.connect(world_dsn)
    try:
        await seed_demo_world(conn)
        rows = await conn.fetch(
            """SELECT p.*, t.decision_key, t.decided_via, t.trace
                 FROM precedents p JOIN decision_traces t ON t.id = p.decision_trace_id
                WHERE p.kind = $1 AND p.policy = 'discount_policy_v3_2' AND 'service_impact' = ANY (p.tags)""",
            CaseKind.RENEWAL.value,
        )
        assert len(rows) >= 3
        assert {r["outcome"] for r in rows} == {"approve"}
        assert all(r["reason_codes"] == ["threshold_breach"] for r in rows)
        assert {r["amount_band"] for r in rows} == {"discount_20_30"}
        first = rows[0]
        assert first["decision_key"] == f"seed:{first['case_id']}"
        assert first["decided_via"] == "seed"
        trace = json.loads(first["trace"])
        assert trace["decision_trace"] == CaseKind.RENEWAL.value
        assert trace["human_gate"] == "finance" and trace["seeded"] is True
        assert "crm: enterprise_arr" in trace["inputs"]
    finally:
        await conn.close()


async def test_seeded_past_decisions_span_all_kinds_with_both_outcomes(world_dsn: str):
    conn = await asyncpg.connect(world_dsn)
    try:
        await seed_demo_world(conn)
        rows = await conn.fetch("SELECT kind, policy, outcome, decided_at < now() AS in_past FROM precedents")
        assert len(rows) == len(PAST_DECISIONS) >= 15
        by_kind = {kind: {r["outcome"] for r in rows if r["kind"] == kind.value} for kind in CaseKind}
        assert all(outcomes == {"approve", "reject"} for outcomes in by_kind.values()), by_kind
        assert {r["policy"] for r in rows} == {"discount_policy_v3_2", "procurement_policy_v2_0", "access_policy_v1_4"}
        assert all(r["in_past"] for r in rows)
        globex = case_id_for(CaseKind.RENEWAL, "globex_corp/fy25")
        assert await conn.fetchval("SELECT count(*) FROM decision_traces WHERE case_id = $1", globex) == 1
    finally:
        await conn.close()


async def test_seeding_twice_changes_nothing(world_dsn: str):
    conn = await asyncpg.connect(world_dsn)
    try:
        assert await seed_demo_world(conn) is True
        before = await row_counts(conn)
        assert await seed_demo_world(conn) is False
        assert await row_counts(conn) == before
    finally:
        await conn.close()


async def test_two_concurrent_seeds_produce_one_world(world_dsn: str):
    first, second = await asyncpg.connect(world_dsn), await asyncpg.connect(world_dsn)
    try:
        results = await asyncio.gather(seed_demo_world(first), seed_demo_world(second))
        assert sorted(results) == [False, True]
        counts = await row_counts(first)
        assert counts["world_accounts"] == len(ACCOUNTS)
        assert counts["precedents"] == counts["decision_traces"] == len(PAST_DECISIONS)
    finally:
        await first.close()
        await second.close()
