"""The README's TypeScript example (examples/typescript) runs as written: its shell commands, copied
out of the README, install the pinned packages, generate the types from `schemas/`, type-check and
run the program the README shows verbatim, against a real dev server, a real worker in verified
mode and the seeded PostgreSQL. Skipped where node or npm is missing or npm cannot reach its registry."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.examples import EXAMPLES
from gates.cases import RenewalDiscountRequest
from gates.presentation import static_summary
from tests.case_helpers import wait_until_waiting
from tests.helpers import clean_env, new_worker
from workers.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "typescript"
SECTION = "### From TypeScript"
NPM_UNREACHABLE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "network request", "getaddrinfo")


def readme_blocks(language: str) -> list[str]:
    """The code blocks of one language in the README's TypeScript subsection, in order."""
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme, f"README has no {SECTION!r} subsection"
    section = re.split(r"\n#{1,3} ", readme.split(SECTION, 1)[1], maxsplit=1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, flags=re.S | re.M)


def test_readme_shows_the_example_program_as_it_is_in_the_repository():
    (program,) = readme_blocks("ts")
    assert program == (EXAMPLE / "src" / "start_case.ts").read_text()


def test_example_pins_every_package_and_commits_its_lockfile():
    package = json.loads((EXAMPLE / "package.json").read_text())
    pins = {**package["dependencies"], **package["devDependencies"]}
    assert {"@temporalio/client", "json-schema-to-typescript", "typescript"} <= set(pins)
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in pins.values()), pins
    locked = json.loads((EXAMPLE / "package-lock.json").read_text())["packages"]
    assert all(locked[f"node_modules/{name}"]["version"] == version for name, version in pins.items())


async def sh(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """One README block as a user pastes it into bash (stopping at the first failing command), off the
    event loop: the worker under test runs on it."""
    result = await asyncio.to_thread(
        subprocess.run, ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0 and any(sign in result.stderr for sign in NPM_UNREACHABLE):
        pytest.skip(f"npm cannot reach its registry: {result.stderr.strip().splitlines()[-1]}")
    return result


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository's parts the example reads, laid out as in the repository, without anything built."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (the TypeScript example needs them)")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    shutil.copytree(
        EXAMPLE, tmp_path / "examples" / "typescript", ignore=shutil.ignore_patterns("node_modules", "dist", "generated")
    )
    return tmp_path


async def test_readme_commands_start_the_case_print_it_waiting_at_finance_and_decide_it_with_a_proof(
    temporal_env, world_pool, checkout: Path, tmp_path_factory
):
    build_and_start, decide = readme_blocks("sh")
    verified = Settings(_env_file=None, database_url=None, identity="verified", state_dir=checkout / ".hitl")
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        # the README's case file, with a renewal period of this test's own on the shared server
        payload = json.loads((EXAMPLES / "renewal_acme_fy26.json").read_text())
        payload["renewal"] = f"fy26-{worker.task_queue[-8:]}"
        (checkout / "examples" / "renewal_acme_fy26.json").write_text(json.dumps(payload))
        case_id = f"renewal_discount_exception:acme_enterprise/{payload['renewal']}"
        env = clean_env(
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            HITL_TASK_QUEUE=worker.task_queue,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `hitl token`
            npm_config_cache=str(tmp_path_factory.mktemp("npm-cache")),
            npm_config_update_notifier="false",
        )

        began = time.monotonic()
        started = await sh(build_and_start, checkout, env)
        assert started.returncode == 0, started.stdout + started.stderr
        print(f"npm ci, npm run build and the first run took {time.monotonic() - began:.0f}s")
        assert (checkout / "examples" / "typescript" / "src" / "generated" / "decision.schema.d.ts").is_file()
        printed = started.stdout
        assert f"case {case_id} (run " in printed
        assert "state: waiting" in printed
        assert "gate: Finance, level 1" in printed and "may decide now: " in printed and "fin_rev_ana" in printed, printed

        handle = temporal_env.client.get_workflow_handle(case_id)
        view = await wait_until_waiting(handle)
        assert view.gate is not None and view.gate.gate == "finance"
        assert f"evidence digest: {view.gate.digest}" in printed
        description = await handle.describe()
        assert description.workflow_type == "RenewalDiscountException"
        assert description.task_queue == worker.task_queue
        request = RenewalDiscountRequest.model_validate(payload)
        assert await description.static_summary() == static_summary(request)

        program_dir = checkout / "examples" / "typescript"
        # without a proof, the verified worker refuses the decision and the case waits on
        unproven = await sh("HITL_REVIEWER=fin_rev_ana node dist/start_case.js ../renewal_acme_fy26.json", program_dir, env)
        assert unproven.returncode == 1, unproven.stdout + unproven.stderr
        assert f"case {case_id} (run {description.run_id})" in unproven.stdout  # the same case, not a second
        assert "rejected: submit_decision needs a proof that you are fin_rev_ana" in unproven.stderr
        assert (await wait_until_waiting(handle)).state == "waiting"

        # a payload the schema lets through but the case refuses: one line, exit 1, no waiting
        bad = payload | {"renewal": f"{payload['renewal']}-bad", "requested_discount_pct": "a lot"}
        (checkout / "examples" / "bad.json").write_text(json.dumps(bad))
        refused = await sh("node dist/start_case.js ../bad.json", program_dir, env, timeout=30)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("start_case: "), refused.stderr
        assert "this start was refused" in refused.stderr and "requested_discount_pct" in refused.stderr

        decided = await sh(decide, program_dir, env)
        assert decided.returncode == 0, decided.stdout + decided.stderr
        assert "accepted: approve by fin_rev_ana accepted at level 1" in decided.stdout
        assert "outcome: approve by fin_rev_ana" in decided.stdout
        result = await handle.result()
    assert (result["outcome"], result["decided_by"], result["decided_via"]) == ("approve", "fin_rev_ana", "update")
