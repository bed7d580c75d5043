"""The key that signs audit checkpoints (gates/audit.py): a PEM file the caller names, or the dev key.

The checkpoint key is what makes a rewrite of the audit log detectable by someone who kept a
checkpoint: whoever holds it can sign a head of their choosing, so in production it lives apart
from the database's administrators (HITL_AUDIT_KEY_FILE). `hitl dev` uses a key in the state
directory, `<state_dir>/audit/checkpoint-key.pem`, created on first use (file 0600, directory 0700)
the way the local token issuer creates its key (activities/identity.py): written aside, then
hard-linked into place only if no other process linked one first, so two processes end up with one key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gates.audit import AuditInputError, load_private_key_pem, load_public_key_pem, private_key_pem
from gates.text import neutralize

DEV_KEY_RELATIVE_PATH = Path("audit") / "checkpoint-key.pem"
# A PEM key is a few hundred bytes; anything much larger is not a key file.
MAX_KEY_FILE_BYTES = 64 * 1024


class AuditKeyError(Exception):
    """A checkpoint key file cannot be used; one line naming the file and what is wrong."""


def _shown(path: Path) -> str:
    return neutralize(str(path), keep_newlines=False)


def _read(path: Path, what: str) -> bytes:
    if path.is_dir():
        raise AuditKeyError(f"{_shown(path)} is a directory, not a {what} file")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise AuditKeyError(f"{_shown(path)}: no such {what} file") from None
    except OSError as err:
        raise AuditKeyError(f"cannot read the {what} {_shown(path)}: {err.strerror or type(err).__name__}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise AuditKeyError(f"{_shown(path)} is larger than {MAX_KEY_FILE_BYTES // 1024} KiB: not a {what} file")
    return data


def load_checkpoint_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM (PKCS8, unencrypted) file at `path`."""
    try:
        return load_private_key_pem(_read(path, "checkpoint key"), what=f"checkpoint key {_shown(path)}")
    except AuditInputError as err:
        raise AuditKeyError(str(err)) from None


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM (SubjectPublicKeyInfo) file at `path`: the key an auditor trusts."""
    try:
        return load_public_key_pem(_read(path, "public key"), what=f"public key {_shown(path)}")
    except AuditInputError as err:
        raise AuditKeyError(str(err)) from None


def dev_key_path(state_dir: Path) -> Path:
    return state_dir / DEV_KEY_RELATIVE_PATH


def dev_checkpoint_key(state_dir: Path) -> Ed25519PrivateKey:
    """The state directory's checkpoint key, created on first use."""
    path = dev_key_path(state_dir)
    return load_checkpoint_key(path) if path.exists() else _create(path)


def _create(path: Path) -> Ed25519PrivateKey:
    """A new key, written to a temporary file and linked into place only if no other process did first."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key = Ed25519PrivateKey.generate()
        pem = private_key_pem(key)
        temporary = directory / f".checkpoint-key.{uuid.uuid4().hex}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)  # atomic, and fails if another process linked its key first
            except FileExistsError:
                return load_checkpoint_key(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    except OSError as err:
        raise AuditKeyError(f"cannot create the checkpoint key {_shown(path)}: {err.strerror or err}") from None
    return key
