"""Private key files created on first use: the local token issuer's (activities/identity.py) and the
audit checkpoint key (activities/audit_keys.py).

The file is 0600 in a 0700 directory from the moment it exists: written aside under a unique name,
then hard-linked into place, which is atomic and fails if another process linked its key first. Two
processes starting at once (the worker and `hitl token`, say) therefore end up with one key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

# A PEM key is a few hundred bytes; anything much larger is not a key file.
MAX_KEY_FILE_BYTES = 64 * 1024


def create_private_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (0600; its directory made 0700) unless the file exists already.

    True if this call created it; False if another process linked its file first (read that one).
    OSError when the directory or the file cannot be written: callers name the file in their own error."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    temporary = directory / f".{path.stem}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
