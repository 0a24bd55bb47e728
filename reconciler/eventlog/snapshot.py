"""SnapshotStore: the folded state at a sequence number, so start-up need not replay everything.

A snapshot is one file, written atomically and checked by a CRC. The log stays the truth: a
damaged snapshot, one written for another state schema, or one folded from another log (its
log id differs from the log's) is skipped with a log line.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack

from reconciler.eventlog.files import make_private_dir, write_durably

__all__ = ["SNAPSHOT_MAGIC", "SnapshotStore", "decode_snapshot", "encode_snapshot", "same_log"]

SNAPSHOT_MAGIC = b"\x89RCSNP\r\n"
_SUFFIX = ".snapshot"
# magic, format version (u16), flags (u16), state schema (u32), sequence number (u64),
# payload length (u32), in format 2 the id of the log it was folded from (16 bytes, zero when
# that log had none); then the msgpack payload; then a CRC-32 of everything before it.
_HEAD_V1 = struct.Struct("<8sHHIQI")
_HEAD = struct.Struct("<8sHHIQI16s")
_CRC = struct.Struct("<I")
_FORMAT_VERSION = 2
_NO_ID = bytes(16)

Decoded = tuple[int, int, Mapping[str, Any], bytes | None]

log = logging.getLogger(__name__)


def encode_snapshot(seq: int, state: Mapping[str, Any], schema: int, log_id: bytes | None) -> bytes:
    """The file's bytes; `log_id` is the log the state was folded from (None: it has none)."""
    payload: bytes = msgpack.packb(dict(state), use_bin_type=True)
    head = _HEAD.pack(
        SNAPSHOT_MAGIC, _FORMAT_VERSION, 0, schema, seq, len(payload), log_id or _NO_ID
    )
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def decode_snapshot(data: bytes) -> Decoded | str:
    """(schema, seq, state, log id: None when format 1 or no id), or a one-line reason the
    snapshot cannot be used."""
    if len(data) < _HEAD_V1.size + _CRC.size:
        return "too short"
    magic, version, _flags, schema, seq, length = _HEAD_V1.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        return "not a snapshot (bad magic)"
    head = _HEAD if version >= 2 else _HEAD_V1
    if len(data) != head.size + length + _CRC.size:
        return f"length {len(data)} does not match the header"
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != zlib.crc32(memoryview(data)[: -_CRC.size]):
        return "checksum mismatch"
    if version not in (1, _FORMAT_VERSION):
        return f"unsupported snapshot format {version}"
    log_id = _HEAD.unpack_from(data)[6] if version >= 2 else _NO_ID
    state = msgpack.unpackb(data[head.size : -_CRC.size], raw=False, strict_map_key=False)
    if not isinstance(state, dict):
        return "payload is not a mapping"
    return int(schema), int(seq), state, (bytes(log_id) if log_id != _NO_ID else None)


def same_log(found: bytes | None, log_id: bytes | None) -> bool:
    """Whether something made with log id `found` may be used with the log `log_id`: the ids
    must be equal. One without an id (format 1, written before logs had one) serves only a log
    without one; once the log has an id (its next segment gives it one) nothing tells which
    log an id-less snapshot came from, so it is passed over and the fold starts afresh, once."""
    return found == log_id


class SnapshotStore:
    """Snapshots in one directory, named by sequence number; the newest `keep` are kept."""

    def __init__(self, directory: Path | str, *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = max(keep, 1)

    def path_for(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def list(self) -> list[tuple[int, Path]]:
        """(seq, path) of every snapshot file, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stem = name[: -len(_SUFFIX)]
            if name.endswith(_SUFFIX) and stem.isdigit():
                found.append((int(stem), self.directory / name))
        found.sort(reverse=True)
        return found

    def write(
        self, seq: int, state: Mapping[str, Any], schema: int, *, log_id: bytes | None
    ) -> Path:
        """Write the state folded up to `seq` from log `log_id` atomically; prune all but the
        newest few."""
        make_private_dir(self.directory)
        path = self.path_for(seq)
        write_durably(path, encode_snapshot(seq, state, schema, log_id))
        for _, old in self.list()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def discard_after(self, last_seq: int) -> None:
        """Remove the snapshots past the log's last record: after events/ was restored from
        an older copy they hold a future the log does not have, and once the log grew past
        them they would pass for its own (same id, same numbers, other records)."""
        for seq, path in self.list():
            if seq > last_seq:
                log.warning("snapshot %s removed: past the log's last record #%d", path, last_seq)
                path.unlink(missing_ok=True)

    def latest(
        self, schema: int, log_id: bytes | None = None
    ) -> tuple[int, Mapping[str, Any]] | None:
        """(seq, state) of the newest valid snapshot of this schema and log, or None."""
        return next(self.candidates(schema, log_id), None)

    def candidates(
        self, schema: int, log_id: bytes | None = None
    ) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """(seq, state) of every valid snapshot of this schema, newest first; each file that
        cannot be used is skipped with a log line. Start-up takes the first whose state it
        can use, so a snapshot that decodes but does not fit falls back to an older one."""
        for seq, path in self.list():
            state = self._read(seq, path, schema, log_id)
            if state is not None:
                yield seq, state

    def oldest_seq(self, schema: int, log_id: bytes | None = None) -> int | None:
        """The seq of the oldest valid snapshot of this schema, or None when there is none.

        Retention removes no record newer than this: were the newer snapshots damaged later,
        start-up could still fall back to this one and find the whole tail after it."""
        found = [seq for seq, _ in self.candidates(schema, log_id)]
        return found[-1] if found else None

    def _read(
        self, seq: int, path: Path, schema: int, log_id: bytes | None
    ) -> Mapping[str, Any] | None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("snapshot %s skipped: %s", path, exc.strerror)
            return None
        try:
            decoded = decode_snapshot(data)
        except (ValueError, msgpack.UnpackException) as exc:
            decoded = f"payload does not decode ({type(exc).__name__})"
        if isinstance(decoded, str):
            log.warning("snapshot %s skipped: %s", path, decoded)
            return None
        found_schema, found_seq, state, found_log = decoded
        if not same_log(found_log, log_id):
            log.warning("snapshot %s skipped: folded from another log", path)
            return None
        if found_schema != schema:
            log.info("snapshot %s skipped: schema %d, want %d", path, found_schema, schema)
            return None
        if found_seq != seq:
            log.warning("snapshot %s skipped: holds sequence %d", path, found_seq)
            return None
        return state
