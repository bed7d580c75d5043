"""`hitl report`: time to decision, escalation, timeout and override rates per gate, and the share decided
by policy per kind, from decision traces (seeded history excluded). Expected numbers are computed here
from the rows themselves, independently of `gates.report`."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy
import pytest

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from gates.report import TraceRow, compute_report
from hitl_temporal.cli.report import render_text
from tests.case_helpers import distinct, start_case, wait_until_waiting
from tests.helpers import HITL, clean_env, new_worker

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def row(kind, gate, via, outcome, *, minutes, escalations=0, proposal=None) -> TraceRow:
    opened = T0 - timedelta(minutes=5)
    return TraceRow(
        kind=kind,
        gate=gate,
        outcome=outcome,
        decided_via=via,
        opened_at=opened,
        gate_opened_at=T0 if gate else None,
        decided_at=T0 + timedelta(minutes=minutes),
        escalations=escalations,
        proposal_outcome=proposal,
    )


def expected_for(rows: list[TraceRow], gate: str) -> dict:
    at_gate = [r for r in rows if r.gate == gate]
    reviewed = [r for r in at_gate if r.decided_via in ("update", "signal")]
    seconds = [(r.decided_at - r.gate_opened_at).total_seconds() for r in reviewed]
    base = [r for r in reviewed if r.proposal_outcome in ("approve", "reject") and r.outcome in ("approve", "reject")]
    return {
        "cases": len(at_gate),
        "p50": float(numpy.percentile(seconds, 50)) if seconds else None,
        "p90": float(numpy.percentile(seconds, 90)) if seconds else None,
        "escalation_rate": sum(r.escalations > 0 for r in at_gate) / len(at_gate),
        "timeout_rate": sum(r.decided_via == "timeout" for r in at_gate) / len(at_gate),
        "override_rate": (sum(r.outcome != r.proposal_outcome for r in base) / len(base)) if base else None,
    }


def test_rates_and_percentiles_per_gate_and_auto_share_per_kind():
    rows = [
        row("renewal_discount_exception", "finance", "update", "approve", minutes=30, proposal="approve"),
        row("renewal_discount_exception", "finance", "signal", "reject", minutes=90, proposal="approve"),
        row("renewal_discount_exception", "finance", "update", "approve", minutes=600, escalations=1, proposal="request_info"),
        row("renewal_discount_exception", "finance", "timeout", "reject", minutes=4320, escalations=2, proposal="approve"),
        row("renewal_discount_exception", None, "policy", "approve", minutes=0, proposal="approve"),
        row("access_escalation", "security", "update", "reject", minutes=45, proposal="reject"),
        row("access_escalation", "security", "operator", "cancelled", minutes=5, proposal="approve"),
        row("access_escalation", None, "policy", "approve", minutes=0),
        row("access_escalation", None, "policy", "approve", minutes=0),
    ]
    report = compute_report(rows, until=T0 + timedelta(days=4))
    by_gate = {g.gate: g for g in report.gates}
    assert sorted(by_gate) == ["finance", "security"]
    for gate, stats in by_gate.items():
        expected = expected_for(rows, gate)
        assert stats.cases == expected["cases"]
        assert stats.p50_seconds == pytest.approx(expected["p50"])
        assert stats.p90_seconds == pytest.approx(expected["p90"])
        assert stats.escalation_rate == pytest.approx(expected["escalation_rate"])
        assert stats.timeout_rate == pytest.approx(expected["timeout_rate"])
        assert stats.override_rate == pytest.approx(expected["override_rate"])
    for kind in report.kinds:
        of_kind = [r for r in rows if r.kind == kind.kind]
        assert kind.cases == len(of_kind)
        assert kind.auto_decided_share == pytest.approx(sum(r.decided_via == "policy" for r in of_kind) / len(of_kind))
    text = render_text(report)
    assert "9 decisions recorded, all time" in text and "finance" in text and "security" in text


def test_a_trace_row_reads_the_gate_opening_escalations_and_proposal_from_the_document():
    record = {
        "kind": "procurement_threshold_breach",
        "gate": "ops",
        "outcome": "approve",
        "decided_via": "update",
        "opened_at": T0 - timedelta(minutes=2),
        "decided_at": T0 + timedelta(hours=3),
        "trace": json.dumps(
            {"gate_opened_at": "2026-03-02T09:00:00Z", "escalations": [{"to_level": 1}], "proposal": {"outcome": "reject"}}
        ),
    }
    parsed = TraceRow.from_record(record)
    assert (parsed.seconds_to_decision, parsed.escalations, parsed.proposal_outcome) == (3 * 3600, 1, "reject")
    assert parsed.overridable


async def test_report_from_the_cli_counts_the_decided_cases_and_writes_a_png(
    temporal_env, world_pool, world_database_url, tmp_path: Path
):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        q = worker.task_queue
        approved, overridden, escalated, cancelled = [
            await start_case(client, request, q)
            for request in distinct([CaseKind.RENEWAL, CaseKind.RENEWAL, CaseKind.ACCESS, CaseKind.PROCUREMENT])
        ]
        auto = [await start_case(client, example(kind, human=False), q) for kind in (CaseKind.RENEWAL, CaseKind.PROCUREMENT)]
        await asyncio.gather(*(wait_until_waiting(h) for h in (approved, overridden, escalated, cancelled)))
        await escalated.execute_update("operator_action", OperatorAction(action="escalate", operator="op", reason="urgent"))
        await approved.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
        await overridden.execute_update("submit_decision", Decision(outcome="reject", reviewer="fin_rev_ben", reason="no"))
        await escalated.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_lead_noor", reason="ok"))
        await cancelled.execute_update("operator_action", OperatorAction(action="cancel", operator="op", reason="duplicate"))
        await asyncio.gather(*(h.result() for h in (approved, overridden, escalated, cancelled, *auto)))

    png = tmp_path / "gates.png"
    env = clean_env(HITL_DATABASE_URL=world_database_url)
    done = await asyncio.to_thread(
        subprocess.run,
        [HITL, "report", "--since", "1h", "--json", "--png", str(png)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    records = await world_pool.fetch("SELECT * FROM decision_traces")
    assert any(r["decided_via"] == "seed" for r in records), "the seeded history is there, and must not count"
    rows = [TraceRow.from_record(r) for r in records if r["decided_via"] != "seed"]
    assert report["cases"] == len(rows) == 6
    gates = {g["gate"]: g for g in report["gates"]}
    assert set(gates) == {r.gate for r in rows if r.gate}
    for gate, stats in gates.items():
        expected = expected_for(rows, gate)
        assert stats["cases"] == expected["cases"]
        assert stats["p50_seconds"] == pytest.approx(expected["p50"])
        assert stats["p90_seconds"] == pytest.approx(expected["p90"])
        assert stats["escalation_rate"] == pytest.approx(expected["escalation_rate"])
        assert stats["timeout_rate"] == pytest.approx(expected["timeout_rate"])
        assert stats["override_rate"] == pytest.approx(expected["override_rate"])
    assert gates["security"]["escalation_rate"] == 1.0
    kinds = {k["kind"]: k for k in report["kinds"]}
    for kind, stats in kinds.items():
        of_kind = [r for r in rows if r.kind == kind]
        assert stats["auto_decided_share"] == pytest.approx(sum(r.decided_via == "policy" for r in of_kind) / len(of_kind))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
