"""Finding a case by what a person remembers: the full case ID, a unique prefix of it, or its business key.

`CaseClient.resolve_case_id` (what services use) and the commands built on it (`hitl show`,
`approve | reject | request-info`, `trace`), against the real dev server shared by the session:
every case here has a unique business key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest

from demo.examples import example
from gates.cases import CaseKind
from hitl_temporal import AmbiguousCase, CaseClient, CaseNotFound
from tests.helpers import assert_eventually, new_worker, run_hitl

VISIBILITY_TIMEOUT = 20


hitl = run_hitl


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, f"rc={result.returncode} stdout={result.stdout!r} stderr={result.stderr!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


async def test_cases_are_found_by_full_id_unique_prefix_or_business_key(temporal_env, world_pool, cli_env):
    tag = uuid.uuid4().hex[:8]
    # two cases whose business keys share a prefix: `.../fy26-<tag>` is exact for one and a prefix of the other
    first_key, second_key = f"acme_enterprise/fy26-{tag}", f"acme_enterprise/fy26-{tag}-q2"
    async with new_worker(temporal_env.client, world_pool) as worker:
        cases = CaseClient(temporal_env.client, worker.task_queue)
        env = cli_env(worker.task_queue)
        first = await cases.start_case(example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{tag}"))
        second = await cases.start_case(example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{tag}-q2"))
        assert (first.case_id, second.case_id) == (
            f"renewal_discount_exception:{first_key}",
            f"renewal_discount_exception:{second_key}",
        )
        common = f"renewal_discount_exception:acme_enterprise/fy26-{tag[:6]}"

        # the exact ID and the business key work at once (no visibility needed); prefixes once visible
        assert await cases.resolve_case_id(first.case_id) == first.case_id
        assert await cases.resolve_case_id(first_key) == first.case_id

        async def prefixes_visible():
            try:  # the business key is published once the case has resolved its policy
                assert await cases.resolve_case_id(second_key[:-1]) == second.case_id
            except CaseNotFound as err:
                raise AssertionError(str(err)) from err
            with pytest.raises(AmbiguousCase):
                await cases.resolve_case_id(common)

        await assert_eventually(prefixes_visible, timeout=VISIBILITY_TIMEOUT, interval=0.3)
        assert await cases.resolve_case_id(first_key) == first.case_id  # exact business key beats a longer one
        assert await cases.resolve_case_id(second.case_id[:-2]) == second.case_id
        with pytest.raises(CaseNotFound, match=f"^no case matching nothing-like-{tag}$"):
            await cases.resolve_case_id(f"nothing-like-{tag}")
        with pytest.raises(CaseNotFound):
            await cases.resolve_case_id("it's [not] an id")

        async def waiting():
            assert (await cases.get_case(first.case_id)).state.value == "waiting"

        await assert_eventually(waiting, timeout=30, interval=0.3)
        by_prefix, ambiguous, unknown, own, approved = await asyncio.gather(
            hitl(env, "show", second.case_id[:-2]),
            hitl(env, "show", common),
            hitl(env, "show", f"nothing-like-{tag}"),
            hitl(env, "approve", second_key, "--as", "ae_sam", "--reason", "my deal"),
            hitl(env, "approve", first_key, "--as", "fin_rev_ana", "--reason", "service-impact precedent"),
        )
        await cases.wait_for_decision(first.case_id)  # the trace is written before the case completes
        late, traced, not_decided, no_trace = await asyncio.gather(
            hitl(env, "reject", first_key, "--as", "fin_rev_ben", "--reason", "too late"),
            hitl(env, "trace", first_key, "--format", "json"),
            hitl(env, "trace", second.case_id[:-2]),
            hitl(env, "trace", f"nobody/fy-{tag}"),
        )
        await cases.handle(second.case_id).terminate("test over")

    # `hitl show` by prefix: the resolved case, aligned `label: value` lines, plain when piped
    assert by_prefix.returncode == 0, by_prefix.stderr
    lines = by_prefix.stdout.splitlines()
    assert lines[0] == second.case_id and "\x1b" not in by_prefix.stdout
    for expected in (
        "state: waiting",
        "requester: ae_sam",
        "may decide now: fin_rev_ana",
        "next deadline: escalates to Finance director at",
    ):
        assert any(line.strip().startswith(expected) for line in lines), expected
    labels = ("state", "policy", "requester", "gate", "may decide now", "reminder", "next deadline")
    colons = {line.index(": ") for line in lines if line.strip().split(": ", 1)[0] in labels}
    assert len(colons) == 1, by_prefix.stdout  # labels are right-aligned: every colon in one column
    assert "**Proposed**: approve" in by_prefix.stdout  # the brief: findings, precedents, proposal

    line = one_line_error(ambiguous)
    assert line.startswith(f"hitl: {common} matches 2 cases: ")
    assert first.case_id in line and second.case_id in line
    assert one_line_error(unknown) == f"hitl: no case matching nothing-like-{tag}"
    assert one_line_error(own) == "hitl: rejected: ae_sam requested this case and may not decide it"
    assert approved.returncode == 0 and approved.stdout.strip() == "accepted: approve by fin_rev_ana accepted at level 1"
    assert one_line_error(late) == f"hitl: rejected: case {first.case_id} is already decided: approve"
    assert traced.returncode == 0, traced.stderr
    trace = json.loads(traced.stdout)
    assert (trace["case_id"], trace["outcome"], trace["decided_by"]) == (first.case_id, "approve", "fin_rev_ana")
    assert one_line_error(not_decided) == f"hitl: no decision trace recorded for {second.case_id} (not decided yet)"
    assert one_line_error(no_trace) == f"hitl: no case matching nobody/fy-{tag}: no decision trace recorded"
