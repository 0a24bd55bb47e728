"""Filling the documented example: values set, comments kept, the result valid TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.init.template import example_config, fill

EXAMPLE = """\
# head comment
[daemon]
# where state goes
state_dir = "../state"
log = "syslog"

[tunnelbroker]
tunnel_id = "1"
# info_url = "https://tunnelbroker.net/tunnelInfo.php"   # optional: read what HE has
"""


def test_values_replace_keys_and_keep_every_comment() -> None:
    """A set key gets its new value; the documentation around it stays line for line."""
    text = fill(EXAMPLE, {"daemon.log": "stderr", "tunnelbroker.tunnel_id": "42"})
    assert text == EXAMPLE.replace('"syslog"', '"stderr"').replace('"1"', '"42"')


def test_a_commented_key_is_switched_on_with_its_remark_and_none_comments_out() -> None:
    """`# info_url = ...` becomes active (its remark kept); None comments a key out."""
    text = fill(
        EXAMPLE, {"tunnelbroker.info_url": "http://127.0.0.1:1/t.php", "daemon.state_dir": None}
    )
    assert '# state_dir = "../state"' in text
    assert 'info_url = "http://127.0.0.1:1/t.php"   # optional: read what HE has' in text
    assert tomllib.loads(text) == {
        "daemon": {"log": "syslog"},
        "tunnelbroker": {"tunnel_id": "1", "info_url": "http://127.0.0.1:1/t.php"},
    }


def test_keys_and_sections_the_example_lacks_are_added_and_notes_go_under_headers() -> None:
    """A key missing from its section lands at the section's end; a new section at the end."""
    text = fill(
        EXAMPLE,
        {"daemon.watch_kernel": False, "notify.events": ["a", "b"], "notify.timeout": 5},
        {"daemon": ["a note"]},
    )
    document = tomllib.loads(text)
    assert document["daemon"]["watch_kernel"] is False
    assert document["notify"] == {"events": ["a", "b"], "timeout": 5}
    assert "[daemon]\n# a note\n" in text


ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(ANY_TEXT, ANY_TEXT)
def test_any_value_and_note_stay_on_their_line_and_round_trip(value: str, note: str) -> None:
    """Whatever a source hands in (newlines, quotes, DEL, C1 controls, U+2028 included), the
    value and the note each stay on one line, the file is TOML with no key but those set, and
    the value reads back the same."""
    text = fill(EXAMPLE, {"daemon.log": value}, {"tunnelbroker": [note]})
    assert len(text.splitlines()) == len(EXAMPLE.splitlines()) + 1  # the note's line only
    assert len(text.split("\n")) == len(text.splitlines()) + 1  # no other line breaks
    assert tomllib.loads(text) == {
        "daemon": {"state_dir": "../state", "log": value},
        "tunnelbroker": {"tunnel_id": "1"},
    }


def test_an_injection_attempt_stays_a_string_and_a_comment() -> None:
    attack = '::/64\ntunnel.hostname_file = "/etc/passwd"\r\n[x]\u2028y = 1\x7f'
    text = fill(EXAMPLE, {"daemon.log": attack}, {"daemon": [attack]})
    assert tomllib.loads(text) == {
        "daemon": {"state_dir": "../state", "log": attack},
        "tunnelbroker": {"tunnel_id": "1"},
    }


def test_the_shipped_example_is_the_repositorys() -> None:
    """The package's example is etc/reconciler.conf, not a copy that could drift."""
    repo = Path(__file__).resolve().parents[2] / "etc" / "reconciler.conf"
    assert example_config() == repo.read_text()
