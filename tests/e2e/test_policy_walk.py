"""The README's walk from shadow to auto runs as written: its shell blocks, copied out of the README
("From shadow to auto: a walk on the demo world"), run command by command on a fresh `hitl dev` of
their own (real Temporal, PostgreSQL with the demo world, a worker in verified mode), and every line
the README shows below a command is found in what that command printed. Then the outcomes a user
relies on are checked in the JSON forms: the version in force and who approved it, the agreement
counts, the what-if change list, and the next case's policy ref and path.

A hitl dev of its own, not the session's dev server: the walk's IDs (`policy_change:discount_policy_v3_3`,
`renewal_discount_exception:acme_enterprise/fy26`) are the README's, and other tests use them too."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError

from tests.case_helpers import case_view
from tests.helpers import HITL, assert_eventually, clean_env, postgres_capable_tmpdir, wait_for_text
from workers.client import DATA_CONVERTER
from workers.devstack import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECTION = "#### From shadow to auto: a walk on the demo world"
BANNER_END = "Stop with Ctrl-C."
CUT = "…"


@dataclass
class Command:
    """One command of a README block and the lines the README shows it printing."""

    text: str
    shown: list[str] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        """The README shows it refused: a `hitl: ...` line is printed only on an error exit."""
        return any(line.startswith("hitl: ") for line in self.shown)


def readme_blocks() -> list[str]:
    """The `sh` blocks of the walk's subsection, in order."""
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme, f"README has no {SECTION!r} subsection"
    section: list[str] = []
    fenced = False
    for line in readme.split(SECTION, 1)[1].splitlines(keepends=True):
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,4} ", line):
            break  # the next heading (a `#` line inside a block is output, not a heading)
        section.append(line)
    return re.findall(r"^```sh\n(.*?)^```$", "".join(section), flags=re.S | re.M)


def commands(block: str) -> list[Command]:
    """A block's commands (a trailing backslash continues a line) with the `#` lines below each."""
    found: list[Command] = []
    pending = ""
    for line in block.splitlines():
        if not line.strip():
            continue
        if line.startswith("#") and not pending:
            assert found, f"an output line before any command: {line!r}"
            found[-1].shown.append(line[1:].strip())
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        found.append(Command(" ".join(pending.split())))
        pending = ""
    assert not pending, f"a block ends inside a command: {pending!r}"
    return found


def missing_line(printed: str, shown: list[str]) -> str | None:
    """The first README line not found in `printed`; lines match in order, each within one printed line,
    its pieces between `…` cuts in order."""
    lines = printed.splitlines()
    at = 0
    for expected in shown:
        pieces = [p.strip() for p in expected.split(CUT) if p.strip()]
        for i in range(at, len(lines)):
            pos = 0
            for piece in pieces:
                pos = lines[i].find(piece, pos)
                if pos < 0:
                    break
                pos += len(piece)
            else:
                at = i + 1
                break
        else:
            return expected
    return None


def test_every_walk_block_parses_into_commands_with_what_they_print():
    blocks = readme_blocks()
    assert len(blocks) == 7, "the walk has seven steps"
    walk = [c for block in blocks for c in commands(block)]
    assert all(c.text.startswith(("hitl ", "grep ")) for c in walk), [c.text for c in walk]
    assert sum(c.fails for c in walk) == 1  # the proposer approving their own change
    assert missing_line("a x b\nc … d", ["a … b", "c … d"]) is None
    assert missing_line("a x b", ["b … a"]) == "b … a"


class WalkStack:
    """A checkout's examples and demo policies in a temporary directory, and `hitl dev` running there."""

    def __init__(self, root: Path):
        self.root = root
        self.temporal_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.env = clean_env(PATH=f"{Path(sys.executable).parent}:{clean_env()['PATH']}")

    def lay_out(self) -> None:
        (self.root / "examples").mkdir()
        for path in (ROOT / "examples").glob("*.json"):
            shutil.copy(path, self.root / "examples" / path.name)
        shutil.copytree(ROOT / "examples" / "policy_walk", self.root / "examples" / "policy_walk")
        shutil.copytree(ROOT / "demo" / "policies", self.root / "demo" / "policies")

    async def start(self) -> None:
        argv = [HITL, "dev", "--temporal-port", str(self.temporal_port), "--ui-port", str(free_port())]
        argv += ["--pg-port", str(free_port())]
        out, err = self.root / "dev.out", self.root / "dev.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self.proc = subprocess.Popen(argv, env=self.env, cwd=self.root, stdout=stdout, stderr=stderr)
        try:
            await wait_for_text(out, BANNER_END, timeout=90, process=self.proc)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nstderr:\n{err.read_text(errors='replace')}") from None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C: worker, Temporal, PostgreSQL in that order
        try:
            self.proc.wait(45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    async def run(self, command: str) -> subprocess.CompletedProcess:
        """A command as a user pastes it into bash in the checkout (pipes included), off the event loop."""
        return await asyncio.to_thread(
            subprocess.run, ["bash", "-o", "pipefail", "-c", command], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip

    async def json(self, *args: str) -> dict:
        done = await self.run(" ".join([HITL, *args, "--json" if args[0] == "policy" else "--format json"]))
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)


@pytest_asyncio.fixture
async def walk_stack() -> AsyncIterator[WalkStack]:
    with postgres_capable_tmpdir("hitl-walk-") as root:
        stack = WalkStack(root)
        stack.lay_out()
        try:
            await stack.start()
            yield stack
        finally:
            await asyncio.to_thread(stack.stop)


async def settled(client: Client, workflow_id: str, *, decided: bool) -> None:
    """What a user sees a moment later: a started case waiting at its gate (or already decided by
    policy), a decided case or an approved change recorded."""

    async def ready() -> None:
        handle = client.get_workflow_handle(workflow_id)
        status = (await handle.describe()).status
        if status == WorkflowExecutionStatus.COMPLETED:
            return
        assert status == WorkflowExecutionStatus.RUNNING, f"{workflow_id} is {status}"
        assert not decided, f"{workflow_id} not recorded yet"
        try:
            state = (await case_view(handle)).state.value
        except WorkflowQueryFailedError as err:
            raise AssertionError(f"{workflow_id} not started yet: {err}") from err
        assert state == "waiting", f"{workflow_id} is {state}"

    await assert_eventually(ready, timeout=45, interval=0.3)


async def test_the_readme_walk_takes_a_new_rule_from_shadow_to_auto_on_hitl_dev(walk_stack: WalkStack):
    client = await Client.connect(f"127.0.0.1:{walk_stack.temporal_port}", data_converter=DATA_CONVERTER)
    started: list[str] = []  # case IDs, for the business keys the README decides them by
    for number, block in enumerate(readme_blocks(), start=1):
        for command in commands(block):
            done = await walk_stack.run(command.text)
            printed = done.stdout + done.stderr
            where = f"step {number}: {command.text}\n--- printed (exit {done.returncode}):\n{printed}"
            assert (done.returncode != 0) == command.fails, where
            missing = missing_line(printed, command.shown)
            assert missing is None, f"README line not printed: {missing!r}\n{where}"
            if command.text.startswith("hitl start "):
                started.append(done.stdout.splitlines()[0])
                await settled(client, started[-1], decided=False)
            elif command.text.startswith("hitl approve ") and done.returncode == 0 and "still needed" not in printed:
                target = command.text.split()[2]
                is_change = target.startswith("policy_change:")
                (workflow_id,) = [target] if is_change else [s for s in started if s.endswith(f":{target}")]
                await settled(client, workflow_id, decided=True)

    # v3.4 is in force, activated by the change two owners approved; v3.3 and v3.2 before it
    (renewal,) = (await walk_stack.json("policy", "show", "renewal"))["kinds"]
    active = renewal["active"]
    assert active["policy_ref"] == "discount_policy_v3_4" and active["change_id"] == "policy_change:discount_policy_v3_4"
    assert active["approved_by"] == ["fin_dir_omar", "cfo_jane"]
    history = (await walk_stack.json("policy", "history", "renewal"))["activations"]
    assert [a["policy_ref"] for a in history] == ["discount_policy_v3_4", "discount_policy_v3_3", "discount_policy_v3_2"]
    assert history[1]["approved_by"] == ["fin_dir_omar"] and history[2]["approved_by"] == []

    # agreement: the three human decisions under v3.3, all counted under DISC-7 in shadow, all agreed
    agreement = await walk_stack.json("policy", "agreement", "--kind", "renewal")
    assert (agreement["decisions"], agreement["agreed"], agreement["not_counted"]["by_policy"]) == (3, 3, 2)
    disc7 = [r for r in agreement["rules"] if r["rule"] == "DISC-7"]
    assert [(r["policy"], r["level"], r["decisions"], r["agreed"]) for r in disc7] == [("discount_policy_v3_3", "shadow", 3, 3)]
    assert round(disc7[0]["low"], 2) == 0.44 and disc7[0]["high"] == 1.0

    # what-if of v3.4 names the cases it changes; none a human rejected
    whatif = await walk_stack.json("policy", "whatif", "demo/policies/discount_policy_v3_4.yaml")
    changed = {c["case_id"]: c["after"]["human"] for c in whatif["cases"] if c["status"] == "changed"}
    assert changed == {
        "renewal_discount_exception:acme_enterprise/fy26": True,
        "renewal_discount_exception:tyrell_robotics/fy26": False,
        "renewal_discount_exception:hooli/fy26": False,
    }
    assert whatif["totals"]["rejected_would_pass"] == 0 and whatif["rejected_would_pass"] == []

    # the case decided in shadow kept v3.3 and a verified human; the next one went through under v3.4 by policy
    before = await walk_stack.json("trace", "tyrell_robotics/fy26")
    assert before["entities"]["policy"] == "discount_policy_v3_3"
    assert (before["decided_by"], before["decided_via"], before["human_gate"]) == ("fin_rev_ben", "update", "finance")
    after = await walk_stack.json("trace", "umbrella_health/fy27")
    assert after["entities"]["policy"] == "discount_policy_v3_4"
    assert (after["outcome"], after["decided_via"], after["human_gate"]) == ("approve", "policy", None)
    (finding,) = [f for f in after["findings"] if f["rule_id"] == "DISC-7"]
    assert (finding["automation"], finding["reason_code"], finding["requires_human"]) == ("auto", "threshold_breach", False)
