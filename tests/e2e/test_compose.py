"""docker-compose.yml: valid Compose, and in step with the code it deploys.

No Docker needed: the file is checked against the Compose specification's JSON schema
(check-jsonschema ships it, so this runs offline) and compared with the Python sources of
truth (search attributes, task queue, the server limits of gates/bounds.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gates.bounds import dev_server_dynamic_config
from gates.cases import DEFAULT_TASK_QUEUE
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES, cli_type_name

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

DYNAMIC_CONFIG_FILE = REPO / "deploy" / "temporal" / "dynamicconfig" / "hitl.yaml"
# The temporalio/server image runs from here: DYNAMIC_CONFIG_FILE_PATH is relative to it.
SERVER_WORKDIR = PurePosixPath("/etc/temporal")

WORKER = "hitl-worker"
MIGRATE = "hitl-migrate"
TEMPORAL = "temporal"
POSTGRESQL = "postgresql"


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    if not CHECK_JSONSCHEMA.exists():
        pytest.fail(f"{CHECK_JSONSCHEMA} is missing: install the dev extras (pip install -e '.[dev]')")
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,  # the return code is the verdict the tests assert on
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def shell_text(service: dict[str, Any]) -> str:
    """The service's entrypoint and command as one string, line continuations joined."""
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(str(v) for v in value)
    return re.sub(r"\\\s*\n", " ", "\n".join(parts))


def search_attribute_services(services: dict[str, Any]) -> list[str]:
    return [name for name, svc in services.items() if "search-attribute create" in shell_text(svc)]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """`environment` as a dict, whichever of the two Compose forms the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """`depends_on` as {service: condition}; the short list form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_compose_file_is_valid_per_compose_spec() -> None:
    result = validate_compose(COMPOSE_FILE)
    assert result.returncode == 0, f"check-jsonschema failed:\n{result.stdout}\n{result.stderr}"


def test_validator_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    """The schema check above is real: an impossible depends_on condition fails it."""
    text = COMPOSE_FILE.read_text()
    broken_text = text.replace("condition: service_completed_successfully", "condition: service_maybe", 1)
    assert broken_text != text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(broken_text)
    result = validate_compose(broken)
    assert result.returncode != 0, f"check-jsonschema accepted a broken file:\n{result.stdout}"
    assert "service_maybe" in result.stdout + result.stderr


def test_setup_registers_exactly_the_search_attributes_of_the_code(services: dict[str, Any]) -> None:
    setup_services = search_attribute_services(services)
    assert len(setup_services) == 1, f"expected one service creating search attributes, found {setup_services}"
    text = shell_text(services[setup_services[0]])

    pairs = re.findall(r"--name[\s=]+(\S+)\s+--type[\s=]+(\S+)", text)
    # Every --name must be followed by its --type (a lone --name would silently be skipped above).
    assert len(pairs) == len(re.findall(r"--name[\s=]", text)), f"unpaired --name in:\n{text}"
    assert len(pairs) == len(set(pairs)), f"duplicate search attributes: {pairs}"

    expected = {(key.name, cli_type_name(key)) for key in ALL_SEARCH_ATTRIBUTES}
    found = set(pairs)
    assert found == expected, (
        f"compose registers {sorted(found - expected)} that the code does not define, "
        f"and misses {sorted(expected - found)}: update the temporal-setup service in docker-compose.yml"
    )


def test_setup_targets_the_workers_namespace(services: dict[str, Any]) -> None:
    (setup,) = search_attribute_services(services)
    assert environment(services[setup]).get("TEMPORAL_NAMESPACE") == environment(services[WORKER])["TEMPORAL_NAMESPACE"]


def test_worker_environment(services: dict[str, Any]) -> None:
    env = environment(services[WORKER])
    assert env["HITL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_NAMESPACE"] == "default"
    assert re.fullmatch(r"postgresql://[^@/]+@postgresql:5432/hitl", env["HITL_DATABASE_URL"]), env["HITL_DATABASE_URL"]
    assert environment(services[MIGRATE])["HITL_DATABASE_URL"] == env["HITL_DATABASE_URL"]


def test_start_up_order(services: dict[str, Any]) -> None:
    (setup,) = search_attribute_services(services)
    worker = depends_on(services[WORKER])
    assert worker.get(MIGRATE) == "service_completed_successfully"
    assert worker.get(setup) == "service_completed_successfully"
    assert worker.get(TEMPORAL) == "service_healthy"

    assert depends_on(services[TEMPORAL]).get(POSTGRESQL) == "service_healthy"
    assert depends_on(services[setup]).get(TEMPORAL) == "service_healthy"
    assert depends_on(services[MIGRATE]).get(POSTGRESQL) == "service_healthy"
    assert depends_on(services["temporal-ui"]).get(TEMPORAL) == "service_healthy"

    # A service_healthy dependency needs a healthcheck to become healthy at all.
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, but it has no healthcheck"


def test_worker_and_migrate_are_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name, cmd in ((WORKER, "worker"), (MIGRATE, "migrate")):
        svc = services[name]
        build = svc.get("build")
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        context = build.get("context", ".") if isinstance(build, dict) else build
        assert (REPO / context / dockerfile).is_file(), f"{name} is not built from the project's Dockerfile"
        assert svc.get("command") == [cmd]
    assert "ENTRYPOINT [\"hitl\"]" in (REPO / "Dockerfile").read_text()


def mounted_dynamic_config(temporal: dict[str, Any]) -> Path:
    """The host file the server reads as DYNAMIC_CONFIG_FILE_PATH, through the service's bind mounts."""
    inside = SERVER_WORKDIR / environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    for volume in temporal.get("volumes") or []:
        source, target = (volume.split(":")[:2] if isinstance(volume, str) else (volume["source"], volume["target"]))
        if inside.is_relative_to(target):
            return (REPO / source / inside.relative_to(target)).resolve()
    raise AssertionError(f"{inside} is not under any volume of the temporal service")


def test_temporal_reads_the_server_limits_of_the_code(services: dict[str, Any]) -> None:
    """The compose server sets exactly the values `hitl dev` and the tests pass as --dynamic-config-value."""
    assert mounted_dynamic_config(services[TEMPORAL]) == DYNAMIC_CONFIG_FILE.resolve()
    config = yaml.safe_load(DYNAMIC_CONFIG_FILE.read_text())
    for key, value in dev_server_dynamic_config().items():
        assert config.get(key) == [{"value": value, "constraints": {}}], (
            f"{DYNAMIC_CONFIG_FILE.relative_to(REPO)}: {key} must be {value} for every namespace "
            f"(gates/bounds.py), found {config.get(key)!r}"
        )
