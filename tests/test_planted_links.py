"""Files we create never go through a link someone else planted.

Each writer meets a symlink at every name it could be predicted to use (the old fixed temp
names and the target itself), each pointing at a 0600 "root" file: that file keeps its
content and mode, and the target ends up a regular file of the right mode.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import atomicfile
from reconciler.atomicfile import scratch_file, write_atomically, write_new
from reconciler.cli import Environment, main
from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.eventlog.checkpoints import CheckpointStore, Chunk
from reconciler.eventlog.format import segment_name
from reconciler.metrics import Publisher
from reconciler.model.config import MetricsConfig
from reconciler.world.hostname_file import backup_path, replace_hostname_file
from tests.commands.test_diff import FIXTURE, run_cli
from tests.commands.test_init import KEY, old_setup
from tests.commands.test_report import STORY_WINDOW
from tests.test_metrics import reading_of, story

SECRET = b"root:$6$secret:19000::::::\n"


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A root-only file elsewhere; after the test it must be exactly as it was."""
    path = tmp_path / "elsewhere" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    path.chmod(0o600)
    yield path
    assert path.read_bytes() == SECRET
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def plant(victim: Path, *names: Path) -> None:
    for name in names:
        name.parent.mkdir(parents=True, exist_ok=True)
        name.symlink_to(victim)


def predictable(target: Path) -> list[Path]:
    """Every scratch name a writer used to take beside `target` (before atomicfile's random
    ones): the planted links go there."""
    return [
        target.with_name(f".{target.name}.tmp"),
        target.with_name(f".{target.name}.{os.getpid()}.tmp"),
        target.with_name(f".{target.name}.init"),
    ]


def assert_regular(path: Path, mode: int, content: bytes | None = None) -> None:
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode), f"{path} is not a regular file"
    assert stat.S_IMODE(info.st_mode) == mode
    if content is not None:
        assert path.read_bytes() == content


def test_a_symlink_at_the_target_is_replaced_not_written_through(
    tmp_path: Path, victim: Path
) -> None:
    target = tmp_path / "shared" / "file"
    plant(victim, target, *predictable(target))
    write_atomically(target, b"ours\n", mode=0o644)
    assert_regular(target, 0o644, b"ours\n")


def test_a_taken_temporary_name_is_never_opened(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a guessed random name (the first one drawn) is skipped: O_EXCL|O_NOFOLLOW."""
    target = tmp_path / "shared" / "file"
    drawn = iter(["guessed", "fresh"])
    monkeypatch.setattr(atomicfile.secrets, "token_hex", lambda n: next(drawn))
    plant(victim, target.with_name(".file.guessed.tmp"))
    write_atomically(target, b"ours\n", mode=0o600)
    assert_regular(target, 0o600, b"ours\n")
    assert target.with_name(".file.guessed.tmp").is_symlink()  # not ours: left alone


def test_write_new_refuses_anything_at_the_name(tmp_path: Path, victim: Path) -> None:
    target = tmp_path / "new"
    plant(victim, target)
    with pytest.raises(FileExistsError):
        write_new(target, b"x")
    assert [p.name for p in tmp_path.iterdir() if p.name != "elsewhere"] == ["new"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_created_files_have_their_mode_before_any_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """Under a lax umask and a strict one, the file has exactly `mode` at its first write."""
    seen: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(atomicfile.os, "write", write)
    for umask in (0o000, 0o077):
        old = os.umask(umask)
        try:
            write_atomically(tmp_path / f"a{umask}", b"x", mode=mode)
            write_new(tmp_path / f"n{umask}", b"x", mode=mode)
            with scratch_file(tmp_path / f"s{umask}", b"x", mode=mode):
                pass
        finally:
            os.umask(old)
    assert seen == [mode] * 6


def test_the_metrics_textfile(tmp_path: Path, victim: Path) -> None:
    """The textfile's directory belongs to node_exporter's user, who can plant links."""
    path = tmp_path / "textfile" / "reconciler.prom"
    plant(victim, path, *predictable(path))
    publisher = Publisher(MetricsConfig(textfile=path), lambda: reading_of(story()), 60.0)
    publisher.write_now()
    assert publisher.writes == 1
    assert_regular(path, 0o644)
    assert b"reconciler_log_last_seq" in path.read_bytes()


def test_init_into_a_directory_others_can_write(tmp_path: Path, victim: Path) -> None:
    output = tmp_path / "shared" / "reconciler.conf"
    key_file = tmp_path / "keys" / "he.key"
    plant(victim, output, *predictable(output), *predictable(key_file))
    argv = old_setup(tmp_path)
    argv[argv.index("-o") + 1] = str(output)
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(KEY + "\n"), stdout=out, stderr=err, environ={}, cwd=tmp_path
    )
    code = main(["init", "--platform", "openbsd", *argv, "--force"], env)
    assert (code, err.getvalue()) == (0, "")
    assert_regular(output, 0o640)
    assert_regular(key_file, 0o600, (KEY + "\n").encode())
    assert b"[tunnel]" in output.read_bytes()


def test_the_hostname_file(tmp_path: Path, victim: Path) -> None:
    """A link at the hostname file is replaced, and what it points at is not copied into the
    backup either."""
    path = tmp_path / "etc" / "hostname.gif0"
    plant(victim, path, backup_path(path), *predictable(path), *predictable(backup_path(path)))
    assert replace_hostname_file(path, "up\n") is True
    assert_regular(path, 0o640, b"up\n")
    assert replace_hostname_file(path, "down\n") is True
    assert_regular(backup_path(path), 0o640, b"up\n")


def test_snapshots_and_checkpoints(tmp_path: Path, victim: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots")
    checkpoints = CheckpointStore(tmp_path / "checkpoints")
    plant(victim, snapshots.path_for(7), *predictable(snapshots.path_for(7)))
    index = checkpoints.directory / "INDEX"
    plant(victim, checkpoints.path_for(7), *predictable(checkpoints.path_for(7)))
    plant(victim, *predictable(index))
    snapshots.write(7, {"seq": 7}, 1, log_id=None)
    checkpoints.write(Chunk(7, 0, 1.0, 2.0, 7), {"seq": 7}, 1, log_id=None)
    assert_regular(snapshots.path_for(7), 0o600)
    assert_regular(checkpoints.path_for(7), 0o600)
    assert_regular(index, 0o600)
    assert snapshots.latest(1) == (7, {"seq": 7})
    assert [c.seq for c in checkpoints.index()] == [7]


def test_a_new_segment_is_never_made_through_a_link(tmp_path: Path, victim: Path) -> None:
    """The scratch names are skipped; a link at the next segment's own name stops the append
    (the log cannot go on there) rather than write through it."""
    directory = tmp_path / "events"
    with EventLog.open(directory, segment_size=200) as log:
        log.append({"n": 1})
        plant(victim, *predictable(directory / segment_name(2)))
        log.append({"n": 2, "pad": "x" * 150})  # does not fit: a new segment at #2
        assert [first for first, _ in log.segments()] == [1, 2]
        plant(victim, directory / segment_name(3))
        with pytest.raises(FileExistsError):
            log.append({"n": 3, "pad": "x" * 150})
    assert_regular(directory / segment_name(2), 0o600)


def test_report_output(tmp_path: Path, victim: Path) -> None:
    output = tmp_path / "shared" / "report.html"
    plant(victim, output, *predictable(output))
    argv = ["report", "--state-dir", str(FIXTURE), *STORY_WINDOW, "-o", str(output)]
    code, _, err = run_cli(argv, tmp_path)
    assert (code, err) == (0, "")
    assert_regular(output, 0o644)
    assert output.read_bytes().startswith(b"<!doctype html>")
