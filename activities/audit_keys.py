"""The key that signs audit checkpoints (gates/audit.py): a PEM file the caller names, or the dev key.

The checkpoint key is what makes a rewrite of the audit log detectable by someone who kept a
checkpoint: whoever holds it can sign a head of their choosing, so in production it lives apart
from the database's administrators (HITL_AUDIT_KEY_FILE). `hitl dev` uses a key in the state
directory, `<state_dir>/audit/checkpoint-key.pem`, created on first use (file 0600, directory 0700)
as the local token issuer creates its key (activities/key_files.py), so two processes end up with one key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from activities.bounded_read import FileUnreadable, read_file_at_most, shown_path
from activities.key_files import MAX_KEY_FILE_BYTES, create_private_file
from gates.audit import AuditInputError, load_private_key_pem, load_public_key_pem, private_key_pem

DEV_KEY_RELATIVE_PATH = Path("audit") / "checkpoint-key.pem"


class AuditKeyError(Exception):
    """A checkpoint key file cannot be used; one line naming the file and what is wrong."""


def _read(path: Path, what: str) -> bytes:
    try:
        return read_file_at_most(path, MAX_KEY_FILE_BYTES, what=what)
    except FileUnreadable as err:
        raise AuditKeyError(str(err)) from None


def load_checkpoint_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM (PKCS8, unencrypted) file at `path`."""
    try:
        return load_private_key_pem(_read(path, "checkpoint key"), what=f"checkpoint key {shown_path(path)}")
    except AuditInputError as err:
        raise AuditKeyError(str(err)) from None


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM (SubjectPublicKeyInfo) file at `path`: the key an auditor trusts."""
    try:
        return load_public_key_pem(_read(path, "public key"), what=f"public key {shown_path(path)}")
    except AuditInputError as err:
        raise AuditKeyError(str(err)) from None


def dev_key_path(state_dir: Path) -> Path:
    return state_dir / DEV_KEY_RELATIVE_PATH


def dev_checkpoint_key(state_dir: Path) -> Ed25519PrivateKey:
    """The state directory's checkpoint key, created on first use."""
    path = dev_key_path(state_dir)
    return load_checkpoint_key(path) if path.exists() else _create(path)


def _create(path: Path) -> Ed25519PrivateKey:
    """A new key, unless another process created one first (then that one)."""
    key = Ed25519PrivateKey.generate()
    try:
        created = create_private_file(path, private_key_pem(key))
    except OSError as err:
        raise AuditKeyError(f"cannot create the checkpoint key {shown_path(path)}: {err.strerror or err}") from None
    return key if created else load_checkpoint_key(path)
