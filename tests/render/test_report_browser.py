"""The report in a real headless Chromium: the rendered DOM (lanes, incident rows and their
durations, an action's why opened by the script) and screenshots that show the timeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.model.incidents import LANES
from tests.commands.test_diff import FIXTURE, run_cli
from tests.commands.test_report import STORY_WINDOW, page_text

from .browser import Browser, browser_or_skip, png_pixels


@pytest.fixture(scope="module")
def browser() -> Browser:
    return browser_or_skip()


@pytest.fixture(scope="module")
def story_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("report")
    target = where / "story.html"
    code, _, err = run_cli(
        ["report", "--state-dir", str(FIXTURE), *STORY_WINDOW, "-o", str(target)], where
    )
    assert code == 0, err
    return target


def test_the_rendered_dom_has_the_lanes_the_incident_and_the_why(
    browser: Browser, story_page: Path
) -> None:
    """After the page's script ran, `?why=16` has opened action #16's reason and the facts
    it rests on beside its mark; the five lanes, the outage and every mark are in the DOM."""
    dom = browser.dump_dom(story_page.as_uri() + "?why=16")
    for lane in LANES:
        assert re.search(rf'<g class="seg" data-lane="{lane}"', dom), lane
    values = re.findall(r'data-lane="ipv4" data-value="(\w+)"', dom)
    assert values == ["unknown", "up", "down", "up"]
    assert re.search(r'<rect class="outage" data-seq="8"', dom)  # from the first failed probe
    marks = re.findall(r'<a class="mark" href="#act-(\d+)"', dom)
    assert marks == ["12", "16", "19"]
    # the script gave spans and marks their tooltips
    assert re.search(r"<title>#16 update-he-endpoint:203\.0\.113\.9: succeeded\. Why: ", dom)
    assert "<title>IPv4: down from 2024-05-01 12:01:00 to 2024-05-01 12:04:00 (#8 to #15)" in dom
    row = re.search(r'<tr id="inc-8".*?</tr>', dom, re.S)
    assert row is not None
    durations = re.search(
        r'<td class="duration">(.*?)</td>.*<td class="repair">(.*?)</td>', row[0], re.S
    )
    assert durations is not None and durations.groups() == ("6m00s so far", "not yet")
    why = re.search(r'<div id="why"([^>]*)>(.*?)</div>', dom, re.S)
    assert why is not None
    attributes, content = why.groups()
    assert "hidden" not in attributes and 'data-seq="16"' in attributes
    text = page_text(content)
    assert "decided update-he-endpoint:203.0.113.9: HE has 203.0.113.7" in text
    assert "#14 wan-address-observed" in text  # a fact it rests on, as replay shows it


def test_without_a_why_asked_for_the_panel_stays_hidden(browser: Browser, story_page: Path) -> None:
    dom = browser.dump_dom(story_page.as_uri())
    why = re.search(r'<div id="why"([^>]*)>', dom)
    assert why is not None and "hidden" in why[1]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_screenshot_shows_the_timeline(
    browser: Browser, story_page: Path, tmp_path: Path, dark: bool
) -> None:
    """Not a blank page: many colours, and the lanes' green (up) and red (down, the outage)
    cover real areas, in light and in dark mode."""
    shot = browser.screenshot(
        story_page.as_uri(), tmp_path / "shot.png", size=(1000, 900), dark=dark
    )
    width, height, colours = png_pixels(shot)
    assert (width, height) == (1000, 900)
    total = width * height
    background, count = colours.most_common(1)[0]
    assert count < total * 0.9, "the page is (nearly) one colour"
    assert len(colours) > 50
    green = sum(n for (r, g, b), n in colours.items() if g > 100 and g > r + 40 and g > b + 40)
    red = sum(n for (r, g, b), n in colours.items() if r > 150 and r > g + 80 and r > b + 80)
    assert green > total * 0.02, "no lane drawn as up"
    assert red > total * 0.002, "no lane drawn as down"
    if dark:
        assert sum(background) < 150, background
    else:
        assert sum(background) > 600, background


def test_it_prints(browser: Browser, story_page: Path, tmp_path: Path) -> None:
    """Chromium prints the page (with its print style sheet) to a PDF of a few pages."""
    pdf = browser.print_to_pdf(story_page.as_uri(), tmp_path / "story.pdf")
    assert pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= pages <= 6, pages
    assert len(pdf) > 20_000
