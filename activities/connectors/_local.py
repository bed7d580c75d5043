"""The local connector: answers every source from the demo world's `world_*` tables.

Each source is one read-only, repeatable-read transaction, so the items of one answer are
consistent with each other. Money comes back as float, counts as int, timestamps as ISO 8601.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from activities.connectors._items import (
    all_missing,
    build_result,
    request_problem,
    wanted_items,
)
from activities.connectors._port import TransientSourceError
from gates.evidence import ConnectorResult, SourceRequest

# What a reader returns: the raw answer, and reasons for items it knowingly lacks;
# None when the key names nothing in that source.
Answer = tuple[dict[str, Any], dict[str, str]] | None
Reader = Callable[[asyncpg.Connection, dict[str, str]], Awaitable[Answer]]


def _money(value) -> float:
    return float(value) if value is not None else 0.0


async def _crm(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    row = await conn.fetchrow(
        """SELECT a.tier, a.enterprise_arr_usd, a.contract_terms, a.account_owner,
                  (SELECT count(*) FROM world_incidents i
                    WHERE i.account_id = a.account_id AND i.resolved_at IS NULL) AS open_incidents,
                  EXISTS (SELECT 1 FROM world_incidents i
                           WHERE i.account_id = a.account_id
                             AND i.service_impacting
                             AND i.severity IN ('sev1', 'sev2')
                             AND i.opened_at > now() - interval '180 days') AS service_impact
             FROM world_accounts a
            WHERE a.account_id = $1""",
        key["account"],
    )
    if row is None:
        return None
    return {
        "enterprise_arr": row["enterprise_arr_usd"],
        "tier": row["tier"],
        "contract_terms": row["contract_terms"],
        "account_owner": row["account_owner"],
        "open_incidents": row["open_incidents"],
        "service_impact": row["service_impact"],
    }, {}


async def _chat(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    thread_id = key["thread"]
    thread = await conn.fetchrow(
        """SELECT t.channel, t.title,
                  (SELECT count(*) FROM world_chat_messages m WHERE m.thread_id = t.thread_id) AS messages,
                  (SELECT max(m.sent_at) FROM world_chat_messages m WHERE m.thread_id = t.thread_id) AS last_message_at,
                  (SELECT m.author FROM world_chat_messages m
                    WHERE m.thread_id = t.thread_id AND m.states_approval
                    ORDER BY m.sent_at DESC, m.message_id DESC LIMIT 1) AS approval_stated_by,
                  (SELECT m.customer_commitment FROM world_chat_messages m
                    WHERE m.thread_id = t.thread_id AND m.customer_commitment IS NOT NULL
                    ORDER BY m.sent_at DESC, m.message_id DESC LIMIT 1) AS customer_commitment
             FROM world_chat_threads t
            WHERE t.thread_id = $1""",
        thread_id,
    )
    if thread is None:
        return None
    participants = await conn.fetch(
        """SELECT author FROM world_chat_messages WHERE thread_id = $1
            GROUP BY author ORDER BY min(sent_at), author""",
        thread_id,
    )
    summary = {
        "channel": thread["channel"],
        "title": thread["title"],
        "messages": thread["messages"],
        "participants": [r["author"] for r in participants],
        "approval_stated_by": thread["approval_stated_by"],
        "customer_commitment": thread["customer_commitment"],
        "last_message_at": thread["last_message_at"],
    }
    return {thread_id: summary}, {}


async def _vendor_master(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    row = await conn.fetchrow(
        """SELECT v.status, v.risk_rating, v.preferred,
                  (SELECT s.ytd_spend_usd FROM world_vendor_spend s
                    WHERE s.vendor_id = v.vendor_id
                      AND s.fiscal_year = (SELECT max(fiscal_year) FROM world_vendor_spend)) AS ytd_spend_usd
             FROM world_vendors v
            WHERE v.vendor_id = $1""",
        key["vendor"],
    )
    if row is None:
        return None
    return {
        "vendor_status": row["status"],
        "risk_rating": row["risk_rating"],
        "preferred": row["preferred"],
        "ytd_spend_usd": _money(row["ytd_spend_usd"]),
    }, {}


async def _finance(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    row = await conn.fetchrow(
        """SELECT budget_total_usd, budget_remaining_usd, owner
             FROM world_budgets
            WHERE cost_centre = $1 AND fiscal_year = (SELECT max(fiscal_year) FROM world_budgets)""",
        key["cost_centre"],
    )
    if row is None:
        return None
    return {
        "budget_total_usd": _money(row["budget_total_usd"]),
        "budget_remaining_usd": _money(row["budget_remaining_usd"]),
        "budget_owner": row["owner"],
    }, {}


async def _procurement(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    row = await conn.fetchrow(
        """SELECT count(p.request_id) AS prior_purchases, max(p.amount_usd) AS largest
             FROM world_vendors v LEFT JOIN world_purchases p ON p.vendor_id = v.vendor_id
            WHERE v.vendor_id = $1
            GROUP BY v.vendor_id""",
        key["vendor"],
    )
    if row is None:
        return None
    return {"prior_purchases": row["prior_purchases"], "largest_prior_purchase_usd": _money(row["largest"])}, {}


async def _iam(conn: asyncpg.Connection, key: dict[str, str]) -> Answer:
    user, system, entitlement = key["user"], key["system"], key["entitlement"]
    person = await conn.fetchrow("SELECT active, manager_id FROM world_people WHERE person_id = $1", user)
    if person is None:
        return None
    current = await conn.fetch(
        """SELECT system || ':' || entitlement AS grant_name FROM world_entitlements
            WHERE person_id = $1 AND (expires_at IS NULL OR expires_at > now())
            ORDER BY system, entitlement""",
        user,
    )
    owners = await conn.fetch(
        """SELECT o.owner_id FROM world_entitlement_owners o JOIN world_people p ON p.person_id = o.owner_id
            WHERE o.system = $1 AND o.entitlement = $2 AND p.active
            ORDER BY o.owner_id""",
        system,
        entitlement,
    )
    exceptions = await conn.fetchval(
        "SELECT count(*) FROM world_access_exceptions WHERE person_id = $1 AND system = $2", user, system
    )
    answer = {
        "subject_active": person["active"],
        "subject_manager": person["manager_id"],
        "current_entitlements": [r["grant_name"] for r in current],
        "prior_exceptions": exceptions,
    }
    missing = {}
    if owners:
        answer["entitlement_owners"] = [r["owner_id"] for r in owners]
    else:
        missing["entitlement_owners"] = f"no active owner recorded for {system}:{entitlement} in iam"
    return answer, missing


_READERS: dict[str, Reader] = {
    "crm": _crm,
    "chat": _chat,
    "vendor_master": _vendor_master,
    "finance": _finance,
    "procurement": _procurement,
    "iam": _iam,
}

_REF_KEYS: dict[str, str] = {
    "crm": "account",
    "chat": "thread",
    "vendor_master": "vendor",
    "finance": "cost_centre",
    "procurement": "vendor",
    "iam": "user",
}


def _ref(request: SourceRequest) -> str:
    """Where a human finds the record, e.g. `crm:acme_enterprise` or `iam:eng_lee/prod_db/admin`."""
    if request.source == "iam":
        return f"iam:{request.key['user']}/{request.key['system']}/{request.key['entitlement']}"
    return f"{request.source}:{request.key[_REF_KEYS[request.source]]}"


class LocalConnector:
    """Every source, read from the demo world in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def fetch(self, request: SourceRequest) -> ConnectorResult:
        problem = request_problem(request)
        if problem:
            return all_missing(request, problem)
        if not wanted_items(request):
            return ConnectorResult(source=request.source)
        try:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                answer = await _READERS[request.source](conn, request.key)
        except (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as err:
            raise TransientSourceError(
                request.source, f"{request.source} (demo world) unavailable: {type(err).__name__}: {err}"
            ) from err
        if answer is None:
            return all_missing(request, f"not found in {request.source}")
        values, missing = answer
        return build_result(request, values, ref=_ref(request), missing=missing)
