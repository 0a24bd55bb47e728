"""`reconciler report` on the committed story log: the page's content and bad input."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.commands.test_diff import FIXTURE, run_cli

STORY_WINDOW = ["--since", "2024-05-01T12:00:00Z", "--until", "2024-05-01T12:07:00Z"]


class _Text(HTMLParser):
    """The page as text, roughly as lynx -dump shows it: scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style", "svg"):
            self._skip += 1
        elif tag not in ("a", "span", "time", "code", "strong"):
            self.parts.append(" ")  # a block or cell starts: words do not run together

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "svg"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def page_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return re.sub(r"\s+", " ", "".join(parser.parts))


def test_report_of_the_story_to_stdout(tmp_path: Path) -> None:
    """The page holds the outage (start, end, duration, explanation, actions, time to
    repair), totals, and every action's why in replay's words; it is all there as text."""
    code, page, err = run_cli(["report", "--state-dir", str(FIXTURE), *STORY_WINDOW], tmp_path)
    assert (code, err) == (0, "")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    text = page_text(page)
    assert "Incidents" in text and "Outages" in text
    # The outage begins at the first failed IPv4 probe (#8), and is still open: the address
    # change began an IPv6 outage that no IPv6 probe in the story ends (the tunnel's
    # restart failed), as the hooks and metrics count it too.
    row = re.search(r'<tr id="inc-8" class="incident open".*?</tr>', page, re.S)
    assert row is not None
    row_text = page_text(row.group(0))
    assert "2024-05-01 12:01:00 still open 6m00s so far" in row_text
    assert "IPv4 down: 2024-05-01 12:01:00 to 2024-05-01 12:04:00 (#8 to #15)" in row_text
    # IPv6 from the WAN losing its address (#10): nothing crossed it from then on
    assert "IPv6 down: 2024-05-01 12:02:01 to still open (#10)" in row_text
    assert "HE endpoint wrong" in row_text
    assert "#10 at 2024-05-01 12:02:01: WAN em0 address: 203.0.113.7 -> none" in row_text
    assert "#12 restart-wan: succeeded" in row_text and "#16 update-he-endpoint" in row_text
    # the why of an action, as replay says it, with the facts it rests on
    assert "decided restart-wan:em0: WAN em0 has no IPv4 address (because of #10, #11)" in text
    assert "changed: WAN em0 address: 203.0.113.7 -> none" in text
    assert "failed (temporary) (#20, 2024-05-01 12:04:04): ifconfig: SIOCSLIFPHYADDR" in text
    assert "IPv4 availability: 56.93%" in text and "IPv6 availability: 28.46%" in text
    assert "1 of them could not be read as a known fact" in text  # the fixture's future fact
    # the timeline in words, for readers without the picture
    assert "IPv4: down from 2024-05-01 12:01:00 to 2024-05-01 12:04:00 (#8 to #15)" in text


def test_as_text_the_timeline_is_told_once(tmp_path: Path) -> None:
    """A text browser prints whatever text the SVG holds: only lane names, times and short
    labels are there; each span is told once, in the timeline in words."""
    _, page, _ = run_cli(["report", "--state-dir", str(FIXTURE), *STORY_WINDOW], tmp_path)
    svg = "".join(re.findall(r"<svg class=\"lanes\".*?</svg>", page, re.S))
    assert svg and "<title>" not in svg
    words = [len(t) for t in re.findall(r">([^<]+)</text>", svg)]
    assert words and max(words) <= 16
    span = "IPv4: down from 2024-05-01 12:01:00 to 2024-05-01 12:04:00 (#8 to #15)"
    assert page_text(page).count(span) == 1


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    """No external script, style sheet, font or image: nothing is fetched."""
    _, page, _ = run_cli(["report", "--state-dir", str(FIXTURE), *STORY_WINDOW], tmp_path)
    assert not re.search(r"<(script|img|link|iframe|object|embed)[^>]*\b(src|href)=", page)
    assert "url(" not in page and "@import" not in page and "@font-face" not in page
    assert not re.search(r"(src|href)=\"(https?:|//)", page)
    assert "@media (prefers-color-scheme:dark)" in page and "@media print" in page


def test_report_to_a_file_prints_its_path(tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    code, out, err = run_cli(
        ["report", "--state-dir", str(FIXTURE), *STORY_WINDOW, "-o", str(target)], tmp_path
    )
    assert (code, err) == (0, "")
    assert out.strip() == str(target)
    assert 'id="inc-8"' in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o644


def test_default_window_starts_at_the_log_when_it_is_younger_than_7_days(
    tmp_path: Path,
) -> None:
    """Without --since the page starts at the first fact (not a week of emptiness)."""
    code, page, _ = run_cli(
        ["report", "--state-dir", str(FIXTURE), "--until", "2024-05-01T12:07:00Z"], tmp_path
    )
    assert code == 0
    assert "2024-05-01 12:00:00 to 2024-05-01 12:07:00 UTC" in page


def test_a_window_without_facts_says_so(tmp_path: Path) -> None:
    code, page, err = run_cli(
        ["report", "--state-dir", str(FIXTURE), "--since", "2025-01-01", "--until", "2025-01-02"],
        tmp_path,
    )
    assert (code, err) == (0, "")
    assert "No facts in this window." in page_text(page)
    assert "No outage in this window." in page_text(page)


def test_a_state_directory_without_a_log_is_one_line(tmp_path: Path) -> None:
    """As replay: no log is no story (a typo'd directory must not read as a quiet week)."""
    code, out, err = run_cli(["report", "--state-dir", str(tmp_path)], tmp_path)
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1 and "no event log in" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2024-05-02", "--until", "2024-05-01"], "--until is before --since"),
        (["--since", "yesterday"], "--since: 'yesterday' is not a time"),
        (["--since", "9000-01-01"], "--since is in the future (--until defaults to now)"),
        (["-o", "/proc/reconciler-report.html"], "-o /proc/reconciler-report.html: cannot write"),
        (["-o", "/nonexistent-dir/r.html"], "directory /nonexistent-dir does not exist"),
        (["-o", "."], "is a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_cli(["report", "--state-dir", str(FIXTURE), *args], tmp_path)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


def test_a_missing_state_directory_is_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli(["report", "--state-dir", str(tmp_path / "nope")], tmp_path)
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_a_torn_tail_still_makes_the_page(tmp_path: Path) -> None:
    """Half a frame at the end of the log (power loss mid-append): the page has everything
    before it."""
    state = tmp_path / "state"
    shutil.copytree(FIXTURE, state)
    segment = sorted((state / "events").glob("*.log"))[-1]
    with segment.open("ab") as file:
        file.write(b"\x00\x00\x01\x7f\xde\xad")  # a frame header cut short
    code, page, err = run_cli(["report", "--state-dir", str(state), *STORY_WINDOW], tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    assert 'id="inc-8"' in page
