"""Which policy is in force is a row in PostgreSQL: activations recorded once, kept whole, never edited."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.case_activities import CaseActivities
from activities.migrations import apply_migrations
from activities.policy_files import bundled_policy_dir
from activities.store.policy_activations import activate, activation_history, active_policy
from demo.examples import FIRST_REVIEWER, example
from gates.cases import CaseKind
from gates.gate import Decision, DecisionOutcome
from gates.messages import ResolvePolicyInput
from gates.policy import PolicyError
from gates.policy_activation import policy_digest
from tests.case_helpers import start_case, trace_row, twin, wait_until_waiting
from tests.helpers import new_worker
from workers.config import Settings

DISCOUNT = bundled_policy_dir() / "discount_policy_v3_2.yaml"


def discount_text(version: str = "3.3", *, above: int = 15) -> str:
    return (
        DISCOUNT.read_text()
        .replace('version: "3.2"', f'version: "{version}"')
        .replace(
            "{fact: request.requested_discount_pct, op: gt, value: 15}",
            f"{{fact: request.requested_discount_pct, op: gt, value: {above}}}",
        )
    )


@pytest.fixture
async def pool(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for path in bundled_policy_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


async def resolve(activities: CaseActivities, kind: CaseKind = CaseKind.RENEWAL):
    return await ActivityEnvironment().run(activities.resolve_policy, ResolvePolicyInput(kind=kind))


async def test_an_activation_is_in_force_and_heads_the_history(pool):
    assert await active_policy(pool, CaseKind.RENEWAL) is None
    text = discount_text()
    first = await activate(
        pool, policy_text=text, approved_by=["fin_dir_lee"], reason="raise the band", change_id="pc-1", trace_id="7"
    )
    assert (first.policy_ref, first.version, first.digest) == ("discount_policy_v3_3", "3.3", policy_digest(text))
    assert first.policy_text == text and first.approved_by == ["fin_dir_lee"] and first.change_id == "pc-1"
    second = await activate(
        pool, policy_text=discount_text("3.4", above=20), approved_by=[], reason="again", change_id=None, trace_id=None
    )
    assert (await active_policy(pool, CaseKind.RENEWAL)) == second
    assert [a.policy_ref for a in await activation_history(pool, CaseKind.RENEWAL)] == [
        "discount_policy_v3_4",
        "discount_policy_v3_3",
    ]
    assert await active_policy(pool, CaseKind.ACCESS) is None


async def test_the_same_change_activates_once_even_when_retried_concurrently(pool):
    results = await asyncio.gather(
        *(
            activate(pool, policy_text=discount_text(), approved_by=["a"], reason="r", change_id="pc-9", trace_id=None)
            for _ in range(5)
        )
    )
    assert len({r.activated_at for r in results}) == 1
    assert len(await activation_history(pool, CaseKind.RENEWAL)) == 1


@pytest.mark.parametrize(
    ("text", "approved_by", "reason", "message"),
    [
        ("policy_id: [", [], "r", "cannot read policy"),
        (
            DISCOUNT.read_text().replace(
                "reason_code: customer_commitment", "reason_code: customer_commitment\n    automation: auto"
            ),
            [],
            "r",
            "rule DISC-5: a customer_commitment rule cannot be auto",
        ),
        (discount_text(), ["Not A Person"], "r", "approved_by must be person IDs"),
        (discount_text(), [], "  ", "reason"),
        (discount_text(), [], "a\x00b", "control character"),
    ],
    ids=["malformed", "commitment-auto", "approver", "blank-reason", "nul-reason"],
)
async def test_an_invalid_activation_is_refused_with_one_line_and_activates_nothing(pool, text, approved_by, reason, message):
    with pytest.raises(PolicyError) as raised:
        await activate(pool, policy_text=text, approved_by=approved_by, reason=reason, change_id=None, trace_id=None)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert await active_policy(pool, CaseKind.RENEWAL) is None


async def test_the_same_version_with_other_content_is_told_apart_by_its_digest(pool):
    first = await activate(pool, policy_text=discount_text(), approved_by=[], reason="r", change_id=None, trace_id=None)
    second = await activate(pool, policy_text=discount_text(above=18), approved_by=[], reason="r", change_id=None, trace_id=None)
    assert first.policy_ref == second.policy_ref and first.digest != second.digest
    assert await active_policy(pool, CaseKind.RENEWAL) == second


async def test_activations_cannot_be_edited_or_deleted(pool):
    await activate(pool, policy_text=discount_text(), approved_by=[], reason="r", change_id=None, trace_id=None)
    for statement in (
        "UPDATE policy_activations SET reason = 'x'",
        "DELETE FROM policy_activations",
        "TRUNCATE policy_activations",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)


async def test_first_resolutions_activate_the_newest_file_once(pool, policy_dir):
    activities = [CaseActivities(pool, Settings(_env_file=None, policy_dir=policy_dir)) for _ in range(4)]
    policies = await asyncio.gather(*(resolve(a) for a in activities))
    assert {p.ref for p in policies} == {"discount_policy_v3_2"}
    history = await activation_history(pool, CaseKind.RENEWAL)
    assert len(history) == 1
    assert history[0].approved_by == [] and history[0].reason.startswith(f"initial activation: newest file in {policy_dir}")
    assert history[0].digest == policy_digest(DISCOUNT.read_text())


async def test_a_saved_file_changes_nothing_until_activated(pool, policy_dir):
    activities = CaseActivities(pool, Settings(_env_file=None, policy_dir=policy_dir))
    assert (await resolve(activities)).ref == "discount_policy_v3_2"
    (policy_dir / "discount_policy_v3_3.yaml").write_text(discount_text())
    (policy_dir / "discount_policy_v3_2.yaml").write_text("broken: [")  # an edit of the active file, broken even
    assert (await resolve(activities)).ref == "discount_policy_v3_2"
    await activate(pool, policy_text=discount_text(), approved_by=["fin_dir_lee"], reason="r", change_id="pc-2", trace_id=None)
    assert (await resolve(activities)).ref == "discount_policy_v3_3"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda text: text + "\nrules: []\n", "duplicate key 'rules' (first at line 7); each key may appear once"),
        (
            lambda text: text.replace("description: Renewal", "description: &d Renewal", 1) + "\nowner: *d\n",
            "YAML aliases (*d) are not allowed",
        ),
        (
            lambda text: text.replace("needs the CFO", 'needs the CFO **Proposed**: approve"', 1).replace(
                "description: A discount above 40%", 'description: "A discount above 40%', 1
            ),
            "contains the markup character '*'",
        ),
        (lambda text: text + "#" * (300 * 1024), "larger than 256 KiB"),
    ],
    ids=["duplicate-key", "alias", "markdown", "huge"],
)
async def test_a_hostile_file_fails_the_first_resolution_for_good_with_the_one_line_reason(pool, policy_dir, edit, reason):
    """Before any activation the directory is read (the bootstrap): a broken file is not fixed by asking again."""
    path = policy_dir / "discount_policy_v3_2.yaml"
    path.write_text(edit(path.read_text()))
    activities = CaseActivities(pool, Settings(_env_file=None, policy_dir=policy_dir))
    with pytest.raises(ApplicationError) as raised:
        await resolve(activities, CaseKind.ACCESS)
    assert raised.value.type == "PolicyError" and raised.value.non_retryable
    message = raised.value.message
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message, message
    assert await active_policy(pool, CaseKind.ACCESS) is None


async def test_a_case_started_after_an_activation_uses_it_while_a_waiting_case_keeps_its_version(
    temporal_env, world_pool, tmp_path
):
    """On the real dev server: a saved file changes nothing; an activation changes only the cases started after it."""
    for path in bundled_policy_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    settings = Settings(_env_file=None, database_url=None, identity="asserted", policy_dir=tmp_path)
    client = temporal_env.client
    async with new_worker(client, world_pool, settings=settings) as worker:
        before = await start_case(client, twin(CaseKind.RENEWAL, 0), worker.task_queue)
        assert (await wait_until_waiting(before)).policy == "discount_policy_v3_2"

        (tmp_path / "discount_policy_v3_3.yaml").write_text(discount_text())  # saved, not activated
        saved = await start_case(client, twin(CaseKind.RENEWAL, 1), worker.task_queue)
        assert (await wait_until_waiting(saved)).policy == "discount_policy_v3_2"

        await activate(
            world_pool,
            policy_text=discount_text(),
            approved_by=["fin_dir_omar", "cfo_jane"],
            reason="test",
            change_id="policy-change-test",
            trace_id=None,
        )
        after = await start_case(client, twin(CaseKind.RENEWAL, 2), worker.task_queue)
        assert (await wait_until_waiting(after)).policy == "discount_policy_v3_3"

        reviewer = FIRST_REVIEWER[CaseKind.RENEWAL]
        for handle in (before, after):
            await handle.execute_update(
                "submit_decision", Decision(outcome=DecisionOutcome.APPROVE, reviewer=reviewer, reason="fine")
            )
            await handle.result()
        await saved.terminate("test done")
    assert json.loads((await trace_row(world_pool, before))["trace"])["entities"]["policy"] == "discount_policy_v3_2"
    assert json.loads((await trace_row(world_pool, after))["trace"])["entities"]["policy"] == "discount_policy_v3_3"


def with_levels(version: str, levels: dict[str, str]) -> str:
    """The bundled discount policy as `version` with `automation:` set on some rules."""
    text = DISCOUNT.read_text().replace('version: "3.2"', f'version: "{version}"')
    for rule_id, level in levels.items():
        text = text.replace(f"  - id: {rule_id}\n", f"  - id: {rule_id}\n    automation: {level}\n", 1)
    return text


async def test_a_rule_in_shadow_sends_a_case_policy_would_decide_to_a_human_and_auto_lets_one_through(temporal_env, world_pool):
    """Through the real worker: the level in force is recorded on each finding of the case."""
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        await activate(world_pool, policy_text=with_levels("3.3", {"DISC-6": "shadow"}), approved_by=["fin_dir_omar"],
                       reason="DISC-6 earns trust", change_id="pc-shadow", trace_id=None)  # fmt: skip
        within = await start_case(client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        view = await wait_until_waiting(within)
        assert view.policy == "discount_policy_v3_3" and not any(f.requires_human for f in view.findings)
        assert {f.rule_id: f.automation for f in view.findings}["DISC-6"] == "shadow"
        await within.terminate("test done")

        # DISC-2, DISC-3 and DISC-6 at auto: a 28% discount needs no human for them...
        auto_levels = with_levels("3.4", {"DISC-2": "auto", "DISC-3": "auto", "DISC-6": "auto"})
        await activate(world_pool, policy_text=auto_levels, approved_by=["fin_dir_omar", "cfo_jane"], reason="at auto",
                       change_id="pc-auto", trace_id=None)  # fmt: skip
        through = await start_case(
            client, example(CaseKind.RENEWAL, human=False, renewal="fy27", requested_discount_pct="28"), worker.task_queue
        )
        result = await through.result()
        # ...but a customer commitment (DISC-5, never auto) still sends the acme case to a human
        committed = await start_case(client, twin(CaseKind.RENEWAL, 0), worker.task_queue)
        assert [f.rule_id for f in (await wait_until_waiting(committed)).findings if f.requires_human] == ["DISC-5"]
        await committed.terminate("test done")
    assert (result.outcome, result.decided_by) == ("approve", "policy:discount_policy_v3_4")
    trace = json.loads((await trace_row(world_pool, through))["trace"])
    levels = {f["rule_id"]: (f.get("automation", "assist"), f["requires_human"], f["reason_code"]) for f in trace["findings"]}
    assert levels["DISC-2"] == levels["DISC-3"] == ("auto", False, "threshold_breach")
    assert levels["DISC-5"] == ("assist", False, None)
