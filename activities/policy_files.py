"""Reading policy files: the bundled directory, a deployment's HITL_POLICY_DIR, and a cache of both.

The parsing and validation of a file's bytes is pure and lives in gates/policy.py; this module is
the I/O around it (open, read, list a directory, stat), so that gates/ stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import gates
from gates.cases import CaseKind
from gates.policy import (
    MAX_POLICY_FILE_BYTES,
    Policy,
    PolicyError,
    gates_by_kind,
    newest_policies,
    parse_policy_file,
    policy_file_shown,
)


def bundled_policy_dir() -> Path:
    """The policies shipped in the package (gates/policies/), used unless HITL_POLICY_DIR names another directory."""
    return Path(gates.__file__).parent / "policies"


def load_policy_file(path: Path) -> Policy:
    """Read and validate one policy file; every problem is one PolicyError line naming the file."""
    return parse_policy_file(_read(path), path)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            # one byte more than allowed, so the parser can tell "too large" from "exactly at the limit"
            data = file.read(MAX_POLICY_FILE_BYTES + 1)
    except OSError as err:
        raise PolicyError(f"{policy_file_shown(path)}: cannot read policy: {err.strerror or type(err).__name__}") from err
    return data


def load_policies(directory: Path) -> dict[CaseKind, Policy]:
    """The newest version of each kind's policy in `directory`; every file must be valid."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PolicyError(f"{directory}: no policy files (*.yaml)")
    return newest_policies((load_policy_file(path) for path in files), origin=str(directory))


def newest_policy_texts(directory: Path) -> dict[CaseKind, tuple[Policy, str]]:
    """Like `load_policies`, with each newest file's text: what the bootstrap activates (the exact
    bytes, so the activation's digest is the file's)."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PolicyError(f"{directory}: no policy files (*.yaml)")
    texts: dict[str, str] = {}
    parsed: list[Policy] = []
    for path in files:
        data = _read(path)
        policy = parse_policy_file(data, path)
        parsed.append(policy)
        texts[policy.ref] = data.decode()  # parse_policy_file read it as UTF-8
    return {kind: (policy, texts[policy.ref]) for kind, policy in newest_policies(parsed, origin=str(directory)).items()}


@cache
def bundled_gates() -> dict[CaseKind, str]:
    """Which gate decides each kind with the bundled policies (renewal -> finance, ...), read once per process."""
    return gates_by_kind(load_policies(bundled_policy_dir()))


class PolicyCache:
    """Parsed policies per directory, re-read only when a file's name, size or mtime changed.

    Parsing and validating every policy file cost about 29 ms of CPU per case start (bench/); an
    edited or added file is seen by the next read, an invalid one fails it as before. Since policy
    activations (gates/policy_activation.py), the worker reads files only to bootstrap a kind that
    has no active version; `hitl policy show` reads them to list proposals."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._texts: dict[CaseKind, tuple[Policy, str]] = {}
        self._policies: dict[CaseKind, Policy] = {}

    @staticmethod
    def key(directory: Path) -> tuple:
        stats = ((p.name, p.stat()) for p in sorted(directory.glob("*.yaml")))
        return (str(directory),) + tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)

    def texts(self, directory: Path) -> dict[CaseKind, tuple[Policy, str]]:
        """The newest policy of each kind in `directory`, with its file's text."""
        key = self.key(directory)
        if key != self._key:
            self._texts = newest_policy_texts(directory)  # an invalid file raises PolicyError, and is re-read next call
            self._policies = {kind: policy for kind, (policy, _) in self._texts.items()}
            self._key = key
        return self._texts

    def load(self, directory: Path) -> dict[CaseKind, Policy]:
        self.texts(directory)
        return self._policies


class ParsedByDigest:
    """Activated policies parsed once per worker process, keyed by the text's digest: the active
    version is read per case start (one SELECT), its parse (about 29 ms) only when it changed."""

    def __init__(self, limit: int = 32) -> None:
        self._limit = limit
        self._parsed: dict[str, Policy] = {}

    def get(self, digest: str, parse: Callable[[], Policy]) -> Policy:
        policy = self._parsed.get(digest)
        if policy is None:
            policy = parse()
            if len(self._parsed) >= self._limit:
                self._parsed.pop(next(iter(self._parsed)))
            self._parsed[digest] = policy
        return policy
