"""A service laid out like Temporal's Python project template (its own top-level `workflows.py`,
`activities.py`, `worker.py` and `starter.py`) uses the public package as the README shows: the
README's `starter.py` runs there, in a subprocess, against the test server and a worker of ours."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from activities.identity import LocalIssuer
from tests.helpers import clean_env, new_worker
from workers.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"

# The service's own modules, named as the template names them: `import workflows` in the service
# (or in anything it imports) must find these, and our package must never need the names.
SERVICE_FILES = {
    "workflows.py": '''"""The service's own workflow."""
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import say_hello


@workflow.defn
class SayHello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(say_hello, name, start_to_close_timeout=timedelta(seconds=5))
''',
    "activities.py": '''"""The service's own activity."""
from temporalio import activity


@activity.defn
async def say_hello(name: str) -> str:
    return f"Hello, {name}!"
''',
    "worker.py": '''"""The service's own worker (not run here)."""
from temporalio.client import Client
from temporalio.worker import Worker

from activities import say_hello
from workflows import SayHello


async def main() -> None:
    client = await Client.connect("localhost:7233")
    await Worker(client, task_queue="hello-task-queue", workflows=[SayHello], activities=[say_hello]).run()
''',
}

# What `import hitl_temporal` must not load: our worker's packages (a service's own `workflows.py`
# would shadow them), PostgreSQL's driver and the CLI's libraries.
FORBIDDEN = ("workflows", "activities", "workers", "asyncpg", "click", "rich")


def readme_starter() -> str:
    """The README's `starter.py`: the first Python block of its "For services" section."""
    section = README.read_text().split("## For services", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's For services section has no Python example"
    return match.group(1)


def lay_out_service(directory: Path, starter: str) -> None:
    for name, text in SERVICE_FILES.items():
        (directory / name).write_text(text)
    (directory / "starter.py").write_text(starter)


def run_in(directory: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=directory, env=env, capture_output=True, text=True, timeout=timeout)


def test_import_hitl_temporal_loads_no_worker_module_nor_postgres_nor_cli_library(tmp_path: Path):
    lay_out_service(tmp_path, readme_starter())
    probe = (
        "import json, sys\n"
        "import workflows, activities  # the service's own, imported first as a service would\n"
        "import hitl_temporal\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "ours = [m for m in sys.modules if m.split('.')[0] in forbidden and m not in ('workflows', 'activities')]\n"
        "print(json.dumps({'ours': sorted(ours), 'workflows': sys.modules['workflows'].__file__}))\n"
    )
    result = run_in(tmp_path, clean_env(), "-c", probe, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["ours"] == [], f"import hitl_temporal loaded {loaded['ours']}"
    assert loaded["workflows"] == str(tmp_path / "workflows.py")

    alone = f"import sys, hitl_temporal; print([m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}])"
    alone = run_in(tmp_path, clean_env(), "-c", alone, timeout=60)
    assert alone.returncode == 0 and alone.stdout.strip() == "[]", alone.stdout + alone.stderr


async def test_the_readme_starter_runs_in_a_service_with_its_own_workflows_and_activities(
    temporal_env, world_pool, tmp_path: Path
):
    # verified identity, as the product runs by default: fin_rev_ana's proof from the local issuer
    settings = Settings(_env_file=None, database_url=None, identity="verified", state_dir=tmp_path / "state")
    proof = LocalIssuer(settings.state_dir).mint("fin_rev_ana")
    async with new_worker(temporal_env.client, world_pool, settings=settings) as worker:
        renewal = f"fy26-{worker.task_queue[-8:]}"  # a case of its own on the shared server
        starter = readme_starter()
        assert starter.count('renewal="fy26"') == 1 and starter.count('"acme_enterprise/fy26"') == 1
        starter = starter.replace('renewal="fy26"', f'renewal="{renewal}"').replace(
            '"acme_enterprise/fy26"', f'"acme_enterprise/{renewal}"'
        )
        lay_out_service(tmp_path, starter)
        env = clean_env(
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            HITL_TASK_QUEUE=worker.task_queue,
            REVIEWER_PROOF=proof,
        )
        result = await asyncio.to_thread(run_in, tmp_path, env, "starter.py")
    # A short-lived SDK process can abort at interpreter exit after its work is done (sdk-python #300,
    # temporal-notes gotcha 1: exit code 134 with PyGILState_Release): the lines below still say what it did.
    exit_crash = result.returncode == -6 or result.returncode == 134
    assert result.returncode == 0 or (exit_crash and "PyGILState_Release" in result.stderr), result.stdout + result.stderr
    case_id = f"renewal_discount_exception:acme_enterprise/{renewal}"
    lines = result.stdout.splitlines()
    may_decide = lines.pop(1).removeprefix("may decide: ").split(", ")
    assert "fin_rev_ana" in may_decide and "ae_sam" not in may_decide, may_decide
    inbox = lines.pop(1)  # visibility is eventually consistent: the case may not be listed yet
    assert inbox in ("inbox: 0 waiting", "inbox: 1 waiting"), inbox
    assert lines == [
        f"started {case_id}",
        "rejected: this proof is fin_rev_ana's, not ae_sam's; get your own: `hitl token --as ae_sam` (local issuer)",
        "approve by fin_rev_ana accepted at level 1",
        "decided: approve by fin_rev_ana",
    ], result.stdout
