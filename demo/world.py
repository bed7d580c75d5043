"""The demo world: a small company with customers, vendors, budgets, people and past decisions.

`seed_demo_world` loads the demo directory (demo/directory.yaml), fills the other `world_*`
tables and a handful of past decisions (decision traces with their precedents) once, so the
first renewal case already finds a service-impact precedent. Dates are relative to the moment
of seeding; fiscal years are calendar years.

Seeding is one transaction under a transaction-level advisory lock: two processes seeding at
once produce one world (the second waits, sees the accounts and does nothing). The gate each past
decision went through is the one the bundled policies name for its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources

import asyncpg

from activities.policy_files import bundled_gates
from activities.store.directory import load_directory
from activities.store.precedents import insert_precedent_row
from activities.store.traces import insert_seeded_trace
from gates.cases import CaseKind, case_id_for
from gates.directory import Directory, parse_directory_file
from gates.precedent import amount_band

# An arbitrary constant shared by every seeder: the key of the advisory lock ("HITLW").
_SEED_LOCK_KEY = 0x48_49_54_4C_57

RENEWAL_POLICY = "discount_policy_v3_2"
PROCUREMENT_POLICY = "procurement_policy_v2_0"
ACCESS_POLICY = "access_policy_v1_4"

# --- Directory ----------------------------------------------------------------------------
# People, reviewer groups, operators and delegations: demo/directory.yaml, loaded like any directory
# file (`hitl directory load`), which fills world_people and the reviewer group tables too.
DIRECTORY_FILE = "directory.yaml"


def demo_directory() -> Directory:
    """The demo world's directory file, parsed and validated (it ships with the package)."""
    data = resources.files("demo").joinpath(DIRECTORY_FILE).read_bytes()
    return parse_directory_file(data, f"demo/{DIRECTORY_FILE}")


# --- CRM ------------------------------------------------------------------------------------
# (account_id, name, tier, enterprise_arr_usd, contract_terms, account_owner)
# fmt: off
ACCOUNTS: list[tuple[str, str, str, int, str, str]] = [
    ("acme_enterprise", "Acme Enterprise", "enterprise", 1_200_000,
     "3-year MSA renewed annually; net 45; 99.95% uptime SLA with service credits", "ae_sam"),
    ("globex_corp", "Globex Corporation", "enterprise", 2_400_000, "2-year MSA; net 30; 99.9% uptime SLA", "ae_jordan"),
    ("initech", "Initech", "growth", 310_000, "Annual subscription; net 30; standard SLA", "ae_sam"),
    ("umbrella_health", "Umbrella Health", "enterprise", 890_000,
     "3-year MSA; net 60; 99.95% uptime SLA; HIPAA BAA", "ae_jordan"),
    ("wayne_logistics", "Wayne Logistics", "enterprise", 1_650_000,
     "3-year MSA; net 45; 99.9% uptime SLA; price cap 5% per year", "ae_sam"),
    ("hooli", "Hooli", "growth", 420_000, "Annual subscription; net 30; 99.9% uptime SLA", "ae_jordan"),
    ("soylent_foods", "Soylent Foods", "starter", 48_000, "Monthly plan billed annually; standard SLA", "ae_jordan"),
    ("tyrell_robotics", "Tyrell Robotics", "enterprise", 980_000,
     "2-year MSA; net 45; 99.95% uptime SLA with service credits", "ae_sam"),
    ("cyberdyne_systems", "Cyberdyne Systems", "growth", 275_000,
     "Annual subscription; net 30; standard SLA", "ae_jordan"),
    ("massive_dynamic", "Massive Dynamic", "enterprise", 3_100_000,
     "5-year enterprise agreement; net 60; 99.99% uptime SLA", "ae_sam"),
    ("vandelay_imports", "Vandelay Industries", "starter", 36_000,
     "Monthly plan billed annually; standard SLA", "ae_jordan"),
    ("pied_piper", "Pied Piper", "starter", 22_000, "Monthly plan; standard SLA", "ae_sam"),
    ("oscorp", "Oscorp", "growth", 515_000, "Annual subscription; net 30; 99.9% uptime SLA", "ae_jordan"),
]
# fmt: on

# (incident_id, account_id, severity, opened days ago, hours to resolve or None (open), title, service_impacting)
INCIDENTS: list[tuple[str, str, str, float, float | None, str, bool]] = [
    ("inc-4127", "acme_enterprise", "sev1", 21, 6.5, "EU cluster outage: order pipeline down for Acme", True),
    ("inc-4188", "acme_enterprise", "sev3", 3, None, "Intermittent SSO login delays", False),
    ("inc-3310", "acme_enterprise", "sev4", 240, 30, "Dashboard export truncates long names", False),
    ("inc-2950", "globex_corp", "sev2", 300, 4, "Data sync lag over 2 hours", True),
    ("inc-4011", "umbrella_health", "sev2", 60, 9, "Claims API errors during open enrolment", True),
    ("inc-4150", "wayne_logistics", "sev3", 12, None, "Route optimiser slow for large fleets", False),
    ("inc-2702", "hooli", "sev1", 400, 11, "Full outage of the US-West region", True),
    ("inc-4176", "tyrell_robotics", "sev2", 5, None, "Telemetry ingestion dropping 8% of events", True),
    ("inc-4099", "oscorp", "sev1", 30, 2, "Internal admin console unavailable", False),
    ("inc-4160", "vandelay_imports", "sev4", 9, None, "Invoice PDF missing logo", False),
    ("inc-3901", "massive_dynamic", "sev3", 95, 20, "Report scheduling skipped one run", False),
]

# --- Chat -----------------------------------------------------------------------------------


@dataclass
class Message:
    author: str
    hours_ago: float
    text: str
    states_approval: bool = False
    customer_commitment: str | None = None


@dataclass
class Thread:
    thread_id: str
    account_id: str | None
    channel: str
    title: str
    messages: list[Message] = field(default_factory=list)


ACME_COMMITMENT = "We will sign the 3-year extension and add our EU business unit before the end of Q2."

THREADS: list[Thread] = [
    Thread(
        "vp_approval_thread",
        "acme_enterprise",
        "#deal-desk-acme",
        "Acme Enterprise FY26 renewal: 25% discount exception",
        [
            Message(
                "ae_sam",
                72,
                "Acme is asking for 25% off the FY26 renewal. Their procurement lead points at the sev1 "
                "on the EU cluster (inc-4127): their order pipeline was down for six and a half hours.",
            ),
            Message("vp_sales_lee", 70, "That outage hit them during their quarter close. What do we get in return?"),
            Message(
                "ae_sam",
                49,
                "Their CFO put it in writing on the call today; quote below. They want the answer "
                "before their board meeting next Thursday.",
            ),
            Message(
                "vp_sales_lee",
                47,
                f"Approved from the sales side: 25% on FY26, conditional on the 3-year term. "
                f'Customer commitment, quoting their CFO: "{ACME_COMMITMENT}" Sending to Finance for the exception.',
                states_approval=True,
                customer_commitment=ACME_COMMITMENT,
            ),
            Message("ae_sam", 46, "Thanks Lee, opening the discount exception case now."),
        ],
    ),
    Thread(
        "inc_4127_acme_eu_outage",
        "acme_enterprise",
        "#inc-4127",
        "Sev1: EU cluster outage (Acme order pipeline)",
        [
            Message("eng_lee", 21 * 24, "Paging: EU cluster API returning 503 for all tenants on shard eu-3."),
            Message("eng_mgr_priya", 21 * 24 - 1, "Declaring sev1. Acme Enterprise is the largest tenant affected."),
            Message("eng_lee", 21 * 24 - 6.5, "Resolved: failover complete, backlog drained. Postmortem to follow."),
        ],
    ),
    Thread(
        "globex_renewal_thread",
        "globex_corp",
        "#deal-desk-globex",
        "Globex FY26 renewal: multi-year pricing",
        [
            Message("ae_jordan", 120, "Globex wants to discuss a 2-year renewal at flat pricing."),
            Message("fin_rev_ben", 118, "Flat pricing is within the standard band; no exception needed so far."),
        ],
    ),
    Thread(
        "tyrell_escalation_thread",
        "tyrell_robotics",
        "#cs-escalations",
        "Tyrell: telemetry loss and renewal risk",
        [
            Message(
                "ae_sam", 30, "Tyrell is unhappy about the telemetry drops (inc-4176) and hints at a discount ask."
            ),
            Message("vp_sales_lee", 28, "No commitments until engineering has a fix date. Keep me posted."),
        ],
    ),
    Thread(
        "northwind_purchase_thread",
        None,
        "#procurement",
        "Northwind Cloud: reserved capacity for FY26",
        [
            Message("eng_mgr_priya", 200, "We need reserved capacity with Northwind for the EU expansion."),
            Message("buyer_pat", 190, "Quote received: 3-year reserved instances, annual billing. Raising the PR."),
            Message("vp_ops_raj", 185, "Fine by me if it stays inside the platform budget.", states_approval=True),
        ],
    ),
]

# --- Vendors, budgets, purchases ------------------------------------------------------------
# (vendor_id, name, status, risk_rating, preferred, category, ytd spend this year, spend last year)
VENDORS: list[tuple[str, str, str, str, bool, str, str, str]] = [
    ("northwind_cloud", "Northwind Cloud", "approved", "low", True, "software", "412000.00", "655000.00"),
    ("contoso_software", "Contoso Software", "approved", "low", True, "software", "96500.00", "88000.00"),
    ("fabrikam_hardware", "Fabrikam Hardware", "approved", "medium", True, "hardware", "228400.00", "340000.00"),
    ("adatum_consulting", "A. Datum Consulting", "approved", "medium", False, "services", "75000.00", "0.00"),
    ("litware_security", "Litware Security", "approved", "low", True, "software", "54000.00", "51000.00"),
    ("coho_data", "Coho Data", "approved", "medium", True, "software", "38250.00", "12000.00"),
    ("wingtip_logistics", "Wingtip Logistics", "approved", "medium", False, "services", "18900.00", "22400.00"),
    ("woodgrove_print", "Woodgrove Print", "approved", "low", False, "services", "4200.00", "6100.00"),
    ("quantum_analytics", "Quantum Analytics", "onboarding", "high", False, "software", "0.00", "0.00"),
    ("tailspin_supplies", "Tailspin Supplies", "blocked", "high", False, "hardware", "0.00", "15800.00"),
]

# (cost_centre, total this year, remaining this year, owner, total last year)
BUDGETS: list[tuple[str, str, str, str, str]] = [
    ("eng_platform", "1800000.00", "612000.00", "cto_hugo", "1500000.00"),
    ("it_ops", "450000.00", "138500.00", "cto_hugo", "420000.00"),
    ("security", "600000.00", "245000.00", "ciso_sam", "520000.00"),
    ("sales", "300000.00", "41000.00", "vp_sales_lee", "280000.00"),
    ("marketing", "250000.00", "4200.00", "coo_mia", "260000.00"),
    ("finance", "120000.00", "66000.00", "cfo_jane", "110000.00"),
    ("facilities", "400000.00", "172000.00", "coo_mia", "380000.00"),
]

# (request_id, vendor_id, amount_usd, category, days ago)
PURCHASES: list[tuple[str, str, str, str, int]] = [
    ("pr-2025-0214", "northwind_cloud", "185000.00", "software", 420),
    ("pr-2025-0388", "northwind_cloud", "240000.00", "software", 300),
    ("pr-2026-0031", "northwind_cloud", "120000.00", "software", 200),
    ("pr-2026-0044", "northwind_cloud", "62000.00", "software", 150),
    ("pr-2025-0102", "contoso_software", "44000.00", "software", 380),
    ("pr-2026-0057", "contoso_software", "42000.00", "software", 170),
    ("pr-2025-0412", "fabrikam_hardware", "310000.00", "hardware", 330),
    ("pr-2026-0090", "fabrikam_hardware", "18400.00", "hardware", 95),
    ("pr-2026-0102", "adatum_consulting", "75000.00", "services", 120),
    ("pr-2025-0220", "litware_security", "51000.00", "software", 400),
    ("pr-2026-0066", "litware_security", "54000.00", "software", 140),
    ("pr-2026-0120", "coho_data", "38250.00", "software", 60),
    ("pr-2026-0131", "wingtip_logistics", "18900.00", "services", 45),
    ("pr-2026-0140", "woodgrove_print", "4200.00", "services", 20),
    ("pr-2025-0301", "tailspin_supplies", "15800.00", "hardware", 350),
]

# --- IAM ------------------------------------------------------------------------------------
# (person_id, system, entitlement, granted days ago, expires in days or None)
ENTITLEMENTS: list[tuple[str, str, str, int, int | None]] = [
    ("eng_lee", "prod_db", "read_only", 400, None),
    ("eng_lee", "aws", "developer", 400, None),
    ("eng_lee", "github", "member", 400, None),
    ("eng_lee", "prod_db", "admin", 97, -90),  # a past temporary grant, expired
    ("eng_mgr_priya", "aws", "developer", 900, None),
    ("eng_mgr_priya", "github", "maintainer", 900, None),
    ("it_admin_kai", "okta", "helpdesk_admin", 600, None),
    ("it_admin_kai", "okta", "super_admin", 40, -10),
    ("it_admin_kai", "github", "member", 600, None),
    ("contractor_max", "aws", "developer", 60, 30),
    ("contractor_max", "github", "member", 60, 30),
    ("ae_sam", "salesforce", "user", 800, None),
    ("ae_jordan", "salesforce", "user", 500, None),
    ("fin_rev_ana", "netsuite", "ap_clerk", 700, None),
    ("fin_dir_omar", "netsuite", "controller", 1200, None),
    ("buyer_pat", "netsuite", "purchasing", 300, 65),
    ("sec_lead_noor", "aws", "admin", 1000, None),
    ("sec_lead_viktor", "okta", "super_admin", 1000, None),
]

# (system, entitlement, owner_id)
ENTITLEMENT_OWNERS: list[tuple[str, str, str]] = [
    ("prod_db", "read_only", "eng_mgr_priya"),
    ("prod_db", "admin", "eng_mgr_priya"),
    ("prod_db", "admin", "sec_lead_noor"),
    ("aws", "developer", "eng_mgr_priya"),
    ("aws", "admin", "cto_hugo"),
    ("aws", "admin", "sec_lead_noor"),
    ("aws", "billing", "fin_dir_lina"),
    ("okta", "helpdesk_admin", "sec_lead_viktor"),
    ("okta", "super_admin", "sec_lead_viktor"),
    ("okta", "super_admin", "ciso_sam"),
    ("github", "member", "eng_mgr_priya"),
    ("github", "maintainer", "eng_mgr_priya"),
    ("github", "org_owner", "cto_hugo"),
    ("salesforce", "user", "vp_sales_lee"),
    ("salesforce", "admin", "vp_sales_lee"),
    ("netsuite", "ap_clerk", "fin_dir_omar"),
    ("netsuite", "purchasing", "vp_proc_dana"),
    ("netsuite", "controller", "cfo_jane"),
]

# (person_id, system, entitlement, days ago, reason)
ACCESS_EXCEPTIONS: list[tuple[str, str, str, int, str]] = [
    ("eng_lee", "prod_db", "admin", 97, "Sev1 inc-3655 data repair; 7-day grant approved by sec_lead_noor"),
    ("eng_lee", "prod_db", "admin", 21, "Sev1 inc-4127 EU outage: break-glass for 12 hours"),
    ("it_admin_kai", "okta", "super_admin", 40, "SSO migration cutover; 30-day grant approved by sec_lead_viktor"),
    ("contractor_max", "aws", "developer", 60, "Contract engagement on the data platform; expires with the contract"),
]


# --- Past decisions -------------------------------------------------------------------------


@dataclass
class PastDecision:
    kind: CaseKind
    business_key: str
    entities: dict[str, str]
    magnitude: Decimal | int  # discount %, purchase USD or access days: what the amount band is cut from
    reason_codes: list[str]
    tags: list[str]
    outcome: str
    decided_by: str
    reason: str
    days_ago: int
    requester: str
    inputs: list[str]


_POLICIES = {CaseKind.RENEWAL: RENEWAL_POLICY, CaseKind.PROCUREMENT: PROCUREMENT_POLICY, CaseKind.ACCESS: ACCESS_POLICY}
_ACCOUNT_OWNERS = {account[0]: account[5] for account in ACCOUNTS}


def _renewal(*, account: str, renewal: str, discount_pct: str, thread: str | None = None, **decision) -> PastDecision:
    return PastDecision(
        kind=CaseKind.RENEWAL,
        business_key=f"{account}/{renewal}",
        entities={"account": account, "renewal": renewal, "policy": RENEWAL_POLICY},
        magnitude=Decimal(discount_pct),
        requester=_ACCOUNT_OWNERS[account],
        inputs=["crm: enterprise_arr", "crm: service_impact", "crm: tier"] + ([f"chat: {thread}"] if thread else []),
        **decision,
    )


def _purchase(*, vendor: str, request_id: str, amount_usd: int, cost_centre: str, **decision) -> PastDecision:
    return PastDecision(
        kind=CaseKind.PROCUREMENT,
        business_key=f"{vendor}/{request_id}",
        entities={"vendor": vendor, "request_id": request_id, "cost_centre": cost_centre, "policy": PROCUREMENT_POLICY},
        magnitude=amount_usd,
        requester="buyer_pat",
        inputs=[
            "vendor_master: vendor_status",
            "vendor_master: preferred",
            "finance: budget_remaining_usd",
            "procurement: prior_purchases",
        ],
        **decision,
    )


def _access(*, user: str, system: str, entitlement: str, duration_days: int, **decision) -> PastDecision:
    return PastDecision(
        kind=CaseKind.ACCESS,
        business_key=f"{user}/{system}/{entitlement}",
        entities={"subject_user": user, "system": system, "entitlement": entitlement, "policy": ACCESS_POLICY},
        magnitude=duration_days,
        inputs=["iam: subject_active", "iam: entitlement_owners", "iam: prior_exceptions"],
        **decision,
    )


_SERVICE_IMPACT_APPROVAL = "Discount exception approved after a service-impact precedent"

# Tags use the vocabulary `gates.kinds` derives for new cases (service_impact, customer_commitment,
# preferred_vendor, new_vendor, high_risk_vendor, privileged, temporary, repeat_exception), so
# precedent lookup (same kind and amount band, overlapping tags) finds these for similar cases.

# fmt: off
PAST_DECISIONS: list[PastDecision] = [
    # Renewals: three service-impact exceptions in the 20-30% band, all approved by finance.
    _renewal(
        account="globex_corp", renewal="fy25", discount_pct="22", days_ago=290,
        reason_codes=["threshold_breach"], tags=["service_impact"], outcome="approve", decided_by="fin_dir_omar",
        reason=f"{_SERVICE_IMPACT_APPROVAL}: 4-hour sev2 data-sync outage; 22% for a 2-year term.",
    ),
    _renewal(
        account="umbrella_health", renewal="fy26", discount_pct="25", days_ago=50,
        reason_codes=["threshold_breach"], tags=["service_impact"], outcome="approve", decided_by="fin_rev_ana",
        reason=f"{_SERVICE_IMPACT_APPROVAL}: claims API sev2 during open enrolment; renewal at the same term.",
    ),
    _renewal(
        account="hooli", renewal="fy25", discount_pct="20", days_ago=380,
        reason_codes=["threshold_breach"], tags=["service_impact"], outcome="approve", decided_by="fin_dir_omar",
        reason=f"{_SERVICE_IMPACT_APPROVAL}: 11-hour US-West sev1; discount limited to one year.",
    ),
    _renewal(
        account="massive_dynamic", renewal="fy25", discount_pct="12", days_ago=410,
        reason_codes=["threshold_breach", "customer_commitment"], tags=["customer_commitment"],
        outcome="approve", decided_by="fin_rev_ben",
        reason="Approved: 12% in exchange for a written 5-year commitment quoted by the customer's CFO.",
    ),
    _renewal(
        account="initech", renewal="fy26", discount_pct="24", days_ago=75,
        reason_codes=["threshold_breach"], tags=[], outcome="reject", decided_by="fin_dir_omar",
        reason="Rejected: no service impact or customer commitment on record; countered at 12%.",
    ),
    _renewal(
        account="wayne_logistics", renewal="fy26", discount_pct="35", days_ago=130,
        reason_codes=["threshold_breach", "customer_commitment"], tags=["customer_commitment"],
        outcome="reject", decided_by="cfo_jane",
        reason="Rejected: 35% would take the account below the margin floor even with the commitment; 20% offered.",
    ),
    # Procurement
    _purchase(
        vendor="northwind_cloud", request_id="pr-2026-0031", amount_usd=120_000, cost_centre="eng_platform",
        days_ago=200, reason_codes=["threshold_breach"], tags=["preferred_vendor"],
        outcome="approve", decided_by="vp_ops_raj",
        reason="Preferred vendor, inside the platform budget; 3-year reserved pricing saves 18%.",
    ),
    _purchase(
        vendor="contoso_software", request_id="pr-2026-0057", amount_usd=42_000, cost_centre="it_ops",
        days_ago=170, reason_codes=["threshold_breach"], tags=["preferred_vendor"],
        outcome="approve", decided_by="ops_rev_kim",
        reason="Preferred vendor renewal at last year's price.",
    ),
    _purchase(
        vendor="quantum_analytics", request_id="pr-2026-0078", amount_usd=64_000, cost_centre="sales",
        days_ago=110, reason_codes=["threshold_breach", "unusual_case"], tags=["new_vendor", "high_risk_vendor"],
        outcome="reject", decided_by="vp_ops_raj",
        reason="Rejected: vendor still onboarding (security review and MSA incomplete); resubmit once approved.",
    ),
    _purchase(
        vendor="fabrikam_hardware", request_id="pr-2025-0412", amount_usd=310_000, cost_centre="facilities",
        days_ago=330, reason_codes=["threshold_breach"], tags=["preferred_vendor"],
        outcome="approve", decided_by="coo_mia",
        reason="Budgeted data-centre refresh; COO sign-off for purchases above $250k.",
    ),
    _purchase(
        vendor="adatum_consulting", request_id="pr-2026-0102", amount_usd=75_000, cost_centre="finance",
        days_ago=120, reason_codes=["threshold_breach"], tags=[],
        outcome="approve", decided_by="vp_ops_raj",
        reason="Approved vendor, not preferred: the only firm with NetSuite migration experience in our timeline.",
    ),
    _purchase(
        vendor="tailspin_supplies", request_id="pr-2026-0115", amount_usd=28_000, cost_centre="facilities",
        days_ago=80, reason_codes=["unusual_case"], tags=["high_risk_vendor"],
        outcome="reject", decided_by="ops_rev_tom",
        reason="Rejected: vendor blocked after a failed delivery audit; buy from Fabrikam instead.",
    ),
    # Access
    _access(
        user="eng_lee", system="prod_db", entitlement="admin", duration_days=7, requester="eng_lee",
        days_ago=97, reason_codes=["threshold_breach"], tags=["privileged", "temporary"],
        outcome="approve", decided_by="sec_lead_noor",
        reason="7-day admin for the inc-3655 data repair; owner and manager agreed; auto-expires.",
    ),
    _access(
        user="it_admin_kai", system="okta", entitlement="super_admin", duration_days=30, requester="it_admin_kai",
        days_ago=40, reason_codes=["threshold_breach"], tags=["privileged", "temporary"],
        outcome="approve", decided_by="sec_lead_viktor",
        reason="SSO migration cutover needs super admin for 30 days; change ticket attached.",
    ),
    _access(
        user="contractor_max", system="aws", entitlement="admin", duration_days=90, requester="eng_mgr_priya",
        days_ago=55, reason_codes=["threshold_breach", "unusual_case"], tags=["privileged", "repeat_exception"],
        outcome="reject", decided_by="ciso_sam",
        reason="Rejected: contractors do not get standing admin; use the break-glass role through on-call.",
    ),
    _access(
        user="ae_jordan", system="salesforce", entitlement="admin", duration_days=14, requester="ae_jordan",
        days_ago=33, reason_codes=["threshold_breach"], tags=["privileged", "temporary"],
        outcome="reject", decided_by="sec_rev_eli",
        reason="Rejected: the delegated report-builder role covers the need without admin.",
    ),
    _access(
        user="buyer_pat", system="netsuite", entitlement="purchasing", duration_days=365, requester="ops_rev_kim",
        days_ago=300, reason_codes=["threshold_breach"], tags=[],
        outcome="approve", decided_by="sec_rev_eli",
        reason="Standard buyer role; a year matches the annual access review.",
    ),
]
# fmt: on


# --- Seeding --------------------------------------------------------------------------------


async def seed_demo_world(conn: asyncpg.Connection) -> bool:
    """Fill the demo world if `world_accounts` is empty (returns True), else do nothing (False)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEED_LOCK_KEY)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM world_accounts)"):
            return False
        now: datetime = await conn.fetchval("SELECT now()")
        await _seed_directory(conn)
        await _seed_crm_and_chat(conn, now)
        await _seed_spend(conn, now)
        await _seed_iam(conn, now)
        await _seed_past_decisions(conn, now)
        return True


async def _seed_directory(conn: asyncpg.Connection) -> None:
    await load_directory(conn, demo_directory(), loaded_by="hitl seed")


async def _seed_crm_and_chat(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.executemany(
        """INSERT INTO world_accounts (account_id, name, tier, enterprise_arr_usd, contract_terms, account_owner)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        ACCOUNTS,
    )
    incidents = []
    for incident_id, account, severity, days, hours, title, impacting in INCIDENTS:
        opened = now - timedelta(days=days)
        resolved = opened + timedelta(hours=hours) if hours is not None else None
        incidents.append((incident_id, account, severity, opened, resolved, title, impacting))
    await conn.executemany(
        """INSERT INTO world_incidents
                  (incident_id, account_id, severity, opened_at, resolved_at, title, service_impacting)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        incidents,
    )
    await conn.executemany(
        "INSERT INTO world_chat_threads (thread_id, account_id, channel, title) VALUES ($1, $2, $3, $4)",
        [(t.thread_id, t.account_id, t.channel, t.title) for t in THREADS],
    )
    await conn.executemany(
        """INSERT INTO world_chat_messages (thread_id, author, sent_at, text, states_approval, customer_commitment)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (
                t.thread_id,
                m.author,
                now - timedelta(hours=m.hours_ago),
                m.text,
                m.states_approval,
                m.customer_commitment,
            )
            for t in THREADS
            for m in t.messages
        ],
    )


async def _seed_spend(conn: asyncpg.Connection, now: datetime) -> None:
    this_year, last_year = now.year, now.year - 1
    await conn.executemany(
        """INSERT INTO world_vendors (vendor_id, name, status, risk_rating, preferred, category)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [row[:6] for row in VENDORS],
    )
    spend = []
    for vendor_id, *_, ytd, last in VENDORS:
        spend.append((vendor_id, last_year, Decimal(last)))
        if Decimal(ytd) > 0:
            spend.append((vendor_id, this_year, Decimal(ytd)))
    await conn.executemany(
        "INSERT INTO world_vendor_spend (vendor_id, fiscal_year, ytd_spend_usd) VALUES ($1, $2, $3)", spend
    )
    budgets = []
    for cost_centre, total, remaining, owner, last_total in BUDGETS:
        budgets.append((cost_centre, this_year, Decimal(total), Decimal(remaining), owner))
        budgets.append((cost_centre, last_year, Decimal(last_total), Decimal(0), owner))
    await conn.executemany(
        """INSERT INTO world_budgets (cost_centre, fiscal_year, budget_total_usd, budget_remaining_usd, owner)
           VALUES ($1, $2, $3, $4, $5)""",
        budgets,
    )
    await conn.executemany(
        """INSERT INTO world_purchases (request_id, vendor_id, amount_usd, category, purchased_at)
           VALUES ($1, $2, $3, $4, $5)""",
        [
            (rid, vendor, Decimal(amount), category, now - timedelta(days=days))
            for rid, vendor, amount, category, days in PURCHASES
        ],
    )


async def _seed_iam(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.executemany(
        """INSERT INTO world_entitlements (person_id, system, entitlement, granted_at, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        [
            (
                person,
                system,
                entitlement,
                now - timedelta(days=granted),
                now + timedelta(days=expires) if expires is not None else None,
            )
            for person, system, entitlement, granted, expires in ENTITLEMENTS
        ],
    )
    await conn.executemany(
        "INSERT INTO world_entitlement_owners (system, entitlement, owner_id) VALUES ($1, $2, $3)", ENTITLEMENT_OWNERS
    )
    await conn.executemany(
        """INSERT INTO world_access_exceptions (person_id, system, entitlement, granted_at, reason)
           VALUES ($1, $2, $3, $4, $5)""",
        [
            (person, system, entitlement, now - timedelta(days=days), reason)
            for person, system, entitlement, days, reason in ACCESS_EXCEPTIONS
        ],
    )


async def _seed_past_decisions(conn: asyncpg.Connection, now: datetime) -> None:
    """Decision traces with their precedents, as if earlier cases had been decided through the gates."""
    for decision in PAST_DECISIONS:
        case_id = case_id_for(decision.kind, decision.business_key)
        gate = bundled_gates()[decision.kind]
        policy = _POLICIES[decision.kind]
        band = amount_band(decision.kind, decision.magnitude)
        decided_at = now - timedelta(days=decision.days_ago)
        opened_at = decided_at - timedelta(hours=19)
        trace = {
            "decision_trace": decision.kind.value,
            "entities": decision.entities,
            "requester": decision.requester,
            "inputs": decision.inputs,
            "human_gate": gate,
            "reason_codes": decision.reason_codes,
            "amount_band": band,
            "tags": decision.tags,
            "outcome": decision.outcome,
            "decided_by": decision.decided_by,
            "reason": decision.reason,
            "seeded": True,
        }
        trace_id = await insert_seeded_trace(
            conn,
            case_id=case_id,
            kind=decision.kind,
            business_key=decision.business_key,
            policy=policy,
            gate=gate,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            reason=decision.reason,
            reason_codes=decision.reason_codes,
            opened_at=opened_at,
            decided_at=decided_at,
            trace=trace,
        )
        if trace_id is None:
            continue  # this past decision is already recorded (the world tables were emptied by hand)
        await insert_precedent_row(
            conn,
            trace_id,
            case_id=case_id,
            kind=decision.kind,
            policy=policy,
            reason_codes=decision.reason_codes,
            amount_band=band,
            tags=decision.tags,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            reason=decision.reason,
            decided_at=decided_at,
        )


async def add_lookalike_people(conn: asyncpg.Connection, person: str, count: int, *, prefix: str) -> list[str]:
    """`count` people who look like `person` to the IAM connector (`<prefix>0`, `<prefix>1`, ...): the
    same manager, entitlements and access exceptions. For load tests that need many access cases
    open at once: a case runs under its own business key (user/system/entitlement), and the IAM
    lookup uses all of it. Idempotent."""
    ids = [f"{prefix}{n}" for n in range(count)]
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO world_people (person_id, name, email, title, manager_id, active)
               SELECT id, p.name || ' (' || id || ')', id || '@lookalike.example', p.title, p.manager_id, p.active
                 FROM world_people p, unnest($2::text[]) AS id WHERE p.person_id = $1
               ON CONFLICT (person_id) DO NOTHING""",
            person,
            ids,
        )
        await conn.execute(
            """INSERT INTO world_entitlements (person_id, system, entitlement, granted_at, expires_at)
               SELECT id, e.system, e.entitlement, e.granted_at, e.expires_at
                 FROM world_entitlements e, unnest($2::text[]) AS id WHERE e.person_id = $1
               ON CONFLICT DO NOTHING""",
            person,
            ids,
        )
        await conn.execute(
            """INSERT INTO world_access_exceptions (person_id, system, entitlement, granted_at, reason)
               SELECT id, x.system, x.entitlement, x.granted_at, x.reason
                 FROM world_access_exceptions x, unnest($2::text[]) AS id
                WHERE x.person_id = $1
                  AND NOT EXISTS (SELECT 1 FROM world_access_exceptions y WHERE y.person_id = id)""",
            person,
            ids,
        )
    return ids
