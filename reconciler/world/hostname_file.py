"""The tunnel's hostname file (OpenBSD `/etc/hostname.gif0`): read it, replace it atomically.

Shared by the platforms that keep one. The previous content is kept as a hidden backup,
`.hostname.gif0.bak`, so that netstart's `/etc/hostname.*` glob never takes the backup for
an interface of its own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from reconciler.atomicfile import write_atomically
from reconciler.errors import TemporaryError

__all__ = ["HOSTNAME_FILE_MODE", "backup_path", "read_hostname_file", "replace_hostname_file"]

HOSTNAME_FILE_MODE = 0o640  # netstart(8) "fixes" anything readable by others, with a warning


def backup_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.bak")


def read_hostname_file(path: Path) -> bytes | None:
    """The file's bytes; None when it is missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemporaryError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_own(path: Path) -> bytes | None:
    """The file's bytes, None when missing or a symlink: a link we did not make is replaced,
    and what it points at is neither copied into the backup nor touched."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise TemporaryError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        return file.read()


def replace_hostname_file(path: Path, content: str) -> bool:
    """Write `content` unless it is there already (False); the previous file becomes the backup.

    Failures raise TemporaryError naming the file users know, not our temporary file.
    """
    data = content.encode()
    previous = _read_own(path)
    if previous == data:
        return False
    try:
        if previous is not None:
            write_atomically(backup_path(path), previous, mode=HOSTNAME_FILE_MODE)
        write_atomically(path, data, mode=HOSTNAME_FILE_MODE)
    except OSError as exc:
        raise TemporaryError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True
