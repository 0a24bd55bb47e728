"""Every file the project creates, made one way: never through a link we did not make.

A directory we write into may be writable by someone else (the metrics textfile's, an
`init -o` target's), who can plant a symlink at any name we would predict. So a file is
always made under an unpredictable name with O_CREAT|O_EXCL|O_NOFOLLOW and its mode set at
creation (on the descriptor we created), written, fsynced, then renamed over the target (a
symlink at the target is replaced, never written through) or linked to a name that must be
new; the directory is fsynced after. Power loss leaves the old file or the new one, never a
mix; on failure only our own temporary name is removed.

The event log's segments, snapshots and checkpoints, the tunnel's hostname file, the metrics
textfile, `init`'s configuration and key file, and `report -o` all use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "fsync_dir",
    "open_existing",
    "probe_writable",
    "scratch_file",
    "write_atomically",
    "write_new",
]

# O_CLOEXEC: a hook or a command started meanwhile must not inherit what we write.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ATTEMPTS = 16  # a name taken 16 times in a row out of 2**64 is somebody's game: stop


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_existing(path: Path, flags: int) -> int:
    """Open a file we made earlier (an append to a log segment, a cut), never via a symlink."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    """A new file beside `path` under an unpredictable name: (fd, its path), `mode` exactly."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, _CREATE, mode & 0o777)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # the umask narrowed it; this is the file we just made
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(path.parent))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _place(path: Path, data: bytes, mode: int, *, replace: bool, durable: bool = True) -> None:
    fd, tmp = _create_temp(path, mode)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)  # rename replaces a symlink at `path`, never follows it
        else:
            os.link(tmp, path, follow_symlinks=False)  # EEXIST when anything is there
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data`, which gets exactly `mode` (whatever the umask).

    On failure the old file is untouched. Whatever is at `path` (a symlink included) is
    replaced, not written through. `durable=False` skips the fsyncs, for a file rewritten
    often whose loss at a power cut costs nothing (the metrics textfile): readers still see
    the old file or the new one, whole.
    """
    _place(path, data, mode, replace=True, durable=durable)


def write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` holding `data` (exactly `mode`), complete or not at all; FileExistsError
    when anything, a symlink included, is already there."""
    _place(path, data, mode, replace=False)


@contextlib.contextmanager
def scratch_file(beside: Path, data: bytes, *, mode: int = 0o600) -> Iterator[Path]:
    """A file holding `data` under an unpredictable name beside `beside`, removed after use
    (for checking a file where it will live before putting it in place)."""
    fd, tmp = _create_temp(beside, mode)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def probe_writable(directory: Path, name: str) -> None:
    """Raise the OSError that writing a file `name` in `directory` would meet, if any."""
    fd, tmp = _create_temp(directory / name, 0o600)
    os.close(fd)
    tmp.unlink()
