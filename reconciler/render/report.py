"""`reconciler report` output: one self-contained HTML page from a `model.incidents.Report`.

Nothing external: the style sheet and the one small script are inline, the timeline is
inline SVG, so the page works offline and as a mail attachment. Everything the timeline
shows is also in text (tables, and the timeline in words) for screen readers, `lynx -dump`
and paper. Facts are told in `replay`'s words (`render.replay`): the same fact reads the
same in both. Every mark and row names its sequence number, for `replay --at`.

The script only adds the timeline's tooltips and shows an action's "why" (its reason and
the facts it rests on, already in the actions table) beside the mark hovered or focused;
`?why=SEQ` in the address opens it. Without it nothing is lost but the tooltips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from html import escape

from reconciler.model.incidents import (
    DAY,
    ActionMark,
    Condition,
    Incident,
    Moment,
    Report,
    Segment,
    Totals,
)
from reconciler.render.replay import entry_lines, state_changes
from reconciler.render.timefmt import duration, iso

__all__ = ["render_report"]

LANE_NAMES = {
    "wan": "WAN",
    "ipv4": "IPv4",
    "ipv6": "IPv6",
    "tunnel": "Tunnel",
    "endpoint": "HE endpoint",
    "actions": "Actions",
}
CONDITION_NAMES = {
    "ipv4-down": "IPv4 down",
    "ipv6-down": "IPv6 down",
    "endpoint-wrong": "HE endpoint wrong",
}
# lane value -> the colour class it is drawn with
_TONE = {
    "up": "ok",
    "matching": "ok",
    "down": "bad",
    "wrong": "bad",
    "missing": "bad",
    "link-down": "bad",
    "no-address": "warn",
    "unknown": "unk",
    "stopped": "stop",
}
_VALUE_WORDS = {
    "no-address": "no address",
    "link-down": "link down",
    "stopped": "daemon stopped",
}
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_WORDS_PER_LANE = 400  # the timeline in words lists this many spans a lane, then counts

# The SVG's geometry, in viewBox units.
_WIDTH = 1000.0
_LEFT = 96.0
_RIGHT = 12.0
_AXIS = 18.0
_LANE = 20.0
_GAP = 5.0
_ROWS = ("wan", "ipv4", "ipv6", "tunnel", "endpoint", "actions")


def render_report(report: Report, *, generated: float, notes: Iterable[str] = ()) -> str:
    """The whole page. `generated` is when it was made; `notes` are lines for its head
    (retention, a torn tail)."""
    window = f"{_when(report.since)} to {_when(report.until)} UTC"
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>reconciler report: {escape(window)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>reconciler report</h1>",
        f'<p class="window">{escape(window)} ({escape(_span(report.until - report.since))})</p>',
        f"<p>{escape(_facts_line(report))} Generated {escape(_when(generated))} UTC. "
        "Numbers with # are the event log's sequence numbers: "
        "<code>reconciler replay --at TIME</code> shows the state at any of them.</p>",
        *(f'<p class="note">{escape(note)}</p>' for note in notes),
        "</header>",
        "<main>",
    ]
    if report.empty:
        parts.append('<p class="empty" id="no-facts">No facts in this window.</p>')
    parts += _summary(report)
    parts += _timeline(report)
    parts += _incidents(report)
    parts += _days(report)
    parts += _actions(report)
    parts += [
        "</main>",
        '<div id="why" role="status" aria-live="polite" hidden></div>',
        f"<script>{_SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --- the head and the totals ---------------------------------------------------------------


def _facts_line(report: Report) -> str:
    if report.empty:
        return "The event log holds no facts in this window."
    line = (
        f"{report.facts} fact{'s' if report.facts != 1 else ''}, "
        f"#{report.first_seq} to #{report.last_seq}."
    )
    if report.unknown:
        line += (
            f" {report.unknown} of them could not be read as a known fact "
            "(shown raw by replay); they change nothing here."
        )
    return line


def _summary(report: Report) -> list[str]:
    t = report.totals
    incidents = report.incidents
    still_open = sum(1 for i in incidents if i.end is None)
    parts = [
        '<section id="summary" aria-labelledby="summary-h">',
        '<h2 id="summary-h">Summary</h2>',
    ]
    parts.append("<ul>")
    parts.append(f"<li>IPv4 availability: {_percent(t.availability('ipv4'))}</li>")
    parts.append(f"<li>IPv6 availability: {_percent(t.availability('ipv6'))}</li>")
    count = f"{len(incidents)} outage{'s' if len(incidents) != 1 else ''}"
    if still_open:
        count += f" ({still_open} still open at the end of the window)"
    parts.append(f"<li>{escape(count)}</li>")
    parts.append(
        f"<li>Time to repair: mean {_opt_duration(t.mean_repair)}, "
        f"worst {_opt_duration(t.worst_repair)}</li>"
    )
    parts.append(f"<li>HE updates: {t.he_updates} ({t.he_updates_ok} accepted)</li>")
    parts.append("</ul>")
    parts.append(
        '<p class="hint">Availability counts only the time with a probe verdict (not before '
        "the first verdict, not while the daemon was stopped). Time to repair is an outage's "
        "duration: from its start (the WAN's change, or the first failed probe) to its end, "
        "as the hooks and the metrics count it.</p>"
    )
    parts.append("</section>")
    return parts


def _days(report: Report) -> list[str]:
    parts = [
        '<section id="days" aria-labelledby="days-h">',
        '<h2 id="days-h">Totals per day and for the period</h2>',
        "<table>",
        "<thead><tr><th scope=col>Day (UTC)</th><th scope=col>IPv4 availability</th>"
        "<th scope=col>IPv6 availability</th><th scope=col>Outages</th>"
        "<th scope=col>Mean time to repair</th><th scope=col>Worst time to repair</th>"
        "<th scope=col>HE updates (accepted)</th></tr></thead>",
        "<tbody>",
    ]
    for day in report.days:
        label = datetime.fromtimestamp(day.start, UTC).strftime("%Y-%m-%d")
        parts.append(_totals_row(label, day, "day"))
    parts.append("</tbody><tfoot>")
    parts.append(_totals_row("Period", report.totals, "period"))
    parts += ["</tfoot>", "</table>", "</section>"]
    return parts


def _totals_row(label: str, totals: Totals, kind: str) -> str:
    cells = [
        _percent(totals.availability("ipv4")),
        _percent(totals.availability("ipv6")),
        str(totals.outages),
        _opt_duration(totals.mean_repair),
        _opt_duration(totals.worst_repair),
        f"{totals.he_updates} ({totals.he_updates_ok})",
    ]
    body = "".join(f"<td>{cell}</td>" for cell in cells)
    return f'<tr class="{kind}"><th scope=row>{escape(label)}</th>{body}</tr>'


# --- the timeline -----------------------------------------------------------------------------


def _rows(since: float, until: float) -> list[tuple[float, float]]:
    """The scale of each timeline row: the window itself up to a day, else whole UTC days."""
    if until - since <= DAY:
        return [(since, max(until, since + 1.0))]
    first = math.floor(since / DAY) * DAY
    return [(day, day + DAY) for day in _frange(first, until, DAY)]


def _frange(start: float, stop: float, step: float) -> Iterator[float]:
    value = start
    while value < stop:
        yield value
        value += step


def _timeline(report: Report) -> list[str]:
    rows = _rows(report.since, report.until)
    parts = [
        '<section id="timeline" aria-labelledby="timeline-h">',
        '<h2 id="timeline-h">Timeline</h2>',
        _legend(),
    ]
    for index, (start, end) in enumerate(rows):
        caption = (
            f"{_when(max(start, report.since))} to {_when(min(end, report.until))} UTC"
            if len(rows) == 1
            else datetime.fromtimestamp(start, UTC).strftime("%A %Y-%m-%d (UTC)")
        )
        parts.append(f'<figure class="row" id="row-{index}">')
        parts.append(_svg(report, start, end, caption))
        parts.append(f"<figcaption>{escape(caption)}</figcaption>")
        parts.append("</figure>")
    parts += _in_words(report)
    parts.append("</section>")
    return parts


def _legend() -> str:
    items = [
        ("ok", "up, matching"),
        ("bad", "down, wrong, missing, link down"),
        ("warn", "no address"),
        ("unk", "unknown"),
        ("stop", "daemon stopped"),
        ("outage", "outage"),
    ]
    marks = [
        ("ok", "action succeeded"),
        ("temporary", "failed, will retry"),
        ("permanent", "failed for good"),
        ("in-flight", "no outcome (cut short, or still running)"),
    ]
    swatches = "".join(
        f'<li><svg width="14" height="14" aria-hidden="true"><rect class="s {tone}" '
        f'width="14" height="14"/></svg> {escape(text)}</li>'
        for tone, text in items
    )
    swatches += "".join(
        f'<li><svg width="14" height="14" aria-hidden="true"><circle class="m o-{tone}" '
        f'cx="7" cy="7" r="5"/></svg> {escape(text)}</li>'
        for tone, text in marks
    )
    return f'<ul class="legend" aria-label="Legend">{swatches}</ul>'


def _svg(report: Report, start: float, end: float, caption: str) -> str:
    plot = _WIDTH - _LEFT - _RIGHT
    height = _AXIS + len(_ROWS) * (_LANE + _GAP) + 2
    lo, hi = max(start, report.since), min(end, report.until)

    def x(at: float) -> float:
        return _LEFT + (min(max(at, start), end) - start) / (end - start) * plot

    out = [
        f'<svg class="lanes" viewBox="0 0 {_WIDTH:g} {height:g}" role="img" '
        f'aria-label="Timeline, {escape(caption)}: the same spans are listed in words below" '
        'preserveAspectRatio="xMinYMin meet">'
    ]
    out += _axis(start, end, x, height)
    # Outages behind the lanes: they show between the lanes, across the actions lane and as
    # a bar over the lanes, and leave the lanes' own colours true.
    shade = len(_ROWS) * (_LANE + _GAP) + 2
    for incident in report.incidents:
        a = max(incident.start, lo)
        b = min(incident.end if incident.end is not None else report.until, hi)
        if b < a:
            continue
        left, width = x(a), max(x(b) - x(a), 3.0)
        out.append(
            f'<rect class="outage" data-seq="{incident.seq}" x="{left:.2f}" y="{_AXIS - 4:g}" '
            f'width="{width:.2f}" height="{shade:g}" '
            f'data-title="{escape(_incident_title(incident, report.until))}"/>'
            f'<rect class="outage-bar" x="{left:.2f}" y="{_AXIS - 4:g}" width="{width:.2f}" '
            'height="3"/>'
        )
    for number, lane in enumerate(_ROWS):
        y = _AXIS + number * (_LANE + _GAP)
        out.append(
            f'<text class="lane-name" x="{_LEFT - 6:g}" y="{y + _LANE * 0.7:.1f}" '
            f'text-anchor="end">{LANE_NAMES[lane]}</text>'
        )
        if lane == "actions":
            out.append(
                f'<line class="track" x1="{_LEFT:g}" x2="{_WIDTH - _RIGHT:g}" '
                f'y1="{y + _LANE / 2:g}" y2="{y + _LANE / 2:g}"/>'
            )
            continue
        for segment in report.lanes.get(lane, ()):
            a, b = max(segment.start, lo), min(segment.end, hi)
            if b < a or (b == a and segment.end > segment.start):
                continue
            out.append(_segment_svg(segment, x(a), max(x(b) - x(a), 0.6), y))
    y = _AXIS + (len(_ROWS) - 1) * (_LANE + _GAP)
    for mark in report.actions:
        if lo <= mark.at <= hi:
            out.append(_mark_svg(mark, x(mark.at), y + _LANE / 2))
    out.append("</svg>")
    return "".join(out)


def _axis(start: float, end: float, x: object, height: float) -> list[str]:
    assert callable(x)
    span = end - start
    step = next((s for s in _TICK_STEPS if span / s <= 12), 21600)
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    out = []
    first = math.ceil(start / step) * step
    for tick in _frange(first, end + 1e-9, step):
        px = x(tick)
        label = datetime.fromtimestamp(tick, UTC).strftime(fmt)
        out.append(
            f'<line class="grid" x1="{px:.2f}" x2="{px:.2f}" y1="{_AXIS - 4:g}" '
            f'y2="{height - 2:g}"/><text class="tick" x="{px:.2f}" y="{_AXIS - 7:g}" '
            f'text-anchor="middle">{label}</text>'
        )
    return out


def _segment_svg(segment: Segment, left: float, width: float, y: float) -> str:
    tone = _TONE.get(segment.value, "unk")
    words = _segment_words(segment)
    label = segment.label or _VALUE_WORDS.get(segment.value, segment.value)
    text = ""
    if width > 7.5 * len(label) and segment.value not in ("unknown", "stopped"):
        text = (
            f'<text class="seg-label {tone}" x="{left + 4:.2f}" y="{y + _LANE * 0.7:.1f}">'
            f"{escape(label)}</text>"
        )
    return (
        f'<g class="seg" data-lane="{segment.lane}" data-value="{escape(segment.value)}" '
        f'data-seq="{segment.seq}"><rect class="s {tone}" x="{left:.2f}" y="{y:g}" '
        f'width="{width:.2f}" height="{_LANE:g}" data-title="{escape(words)}"/>{text}</g>'
    )


def _mark_svg(mark: ActionMark, cx: float, cy: float) -> str:
    title = f"#{mark.seq} {mark.key}: {_outcome_words(mark)}. Why: {mark.reason}"
    return (
        f'<a class="mark" href="#act-{mark.seq}" data-why="{mark.seq}" data-seq="{mark.seq}" '
        f'aria-label="{escape(title)}" data-title="{escape(title)}">'
        f'<circle class="m o-{mark.outcome}" cx="{cx:.2f}" cy="{cy:g}" r="6"/></a>'
    )


def _segment_words(segment: Segment) -> str:
    value = _VALUE_WORDS.get(segment.value, segment.value)
    what = f"{LANE_NAMES[segment.lane]}: {value}"
    if segment.label and segment.value not in ("missing",):
        what += f" ({_label_words(segment)})"
    since = _when(segment.start) if segment.seq else "before the log"
    until = "the end of the window" if segment.open else _when(segment.end)
    seqs = f"#{segment.seq}" if segment.seq else "no fact"
    if segment.end_seq:
        seqs += f" to #{segment.end_seq}"
    return f"{what} from {since} to {until} ({seqs})"


def _label_words(segment: Segment) -> str:
    if segment.lane == "tunnel":
        return f"local end {segment.label}"
    if segment.lane == "endpoint":
        return f"HE has {segment.label}"
    return segment.label


def _in_words(report: Report) -> list[str]:
    parts = [
        '<details class="words" id="in-words">',
        "<summary>The timeline in words</summary>",
    ]
    for lane in ("wan", "ipv4", "ipv6", "tunnel", "endpoint"):
        segments = [s for s in report.lanes.get(lane, ()) if s.end >= report.since]
        parts.append(f"<h3>{LANE_NAMES[lane]}</h3><ul>")
        for segment in segments[:_WORDS_PER_LANE]:
            parts.append(f"<li>{escape(_segment_words(segment))}</li>")
        if len(segments) > _WORDS_PER_LANE:
            parts.append(f"<li>... and {len(segments) - _WORDS_PER_LANE} more</li>")
        parts.append("</ul>")
    parts.append("</details>")
    return parts


# --- incidents and actions ------------------------------------------------------------------


def _incident_title(incident: Incident, until: float) -> str:
    kinds = ", ".join(CONDITION_NAMES[k] for k in incident.kinds)
    end = "still open" if incident.end is None else _when(incident.end)
    return (
        f"Outage #{incident.seq}: {kinds}, {_when(incident.start)} to {end}, "
        f"{_span(incident.duration(until))}"
    )


def _incidents(report: Report) -> list[str]:
    parts = ['<section id="incidents" aria-labelledby="incidents-h">']
    parts.append('<h2 id="incidents-h">Incidents</h2>')
    if not report.incidents:
        parts.append('<p class="none">No outage in this window.</p></section>')
        return parts
    parts += [
        "<table>",
        "<thead><tr><th scope=col>#</th><th scope=col>Start</th><th scope=col>End</th>"
        "<th scope=col>Duration</th><th scope=col>What</th>"
        "<th scope=col>First change that explains it</th><th scope=col>Actions</th>"
        "<th scope=col>Time to repair</th></tr></thead>",
        "<tbody>",
    ]
    marks = {m.seq: m for m in report.actions}
    for incident in report.incidents:
        parts.append(_incident_row(incident, report, marks))
    parts += ["</tbody>", "</table>", "</section>"]
    return parts


def _incident_row(incident: Incident, report: Report, marks: Mapping[int, ActionMark]) -> str:
    before = incident.start < report.since
    start = _time(incident.start) + (" (before the window)" if before else "")
    if incident.end is None:
        end = "still open"
        duration_text = f"{_span(incident.duration(report.until))} so far"
        repair = "not yet"
    else:
        end = _time(incident.end) + f" (#{incident.end_seq})"
        duration_text = _span(incident.duration(report.until))
        repair = _opt_duration(incident.time_to_repair)
    what = "<ul>" + "".join(_condition_item(c) for c in incident.conditions) + "</ul>"
    what += _causes(incident.causes)
    explained = _explanation(incident, report.moments)
    taken = [marks[s] for s in incident.actions if s in marks]
    actions = (
        "<ul>"
        + "".join(
            f'<li><a href="#act-{m.seq}" data-why="{m.seq}">#{m.seq}</a> '
            f'{escape(m.kind)}: <span class="o-{m.outcome}">{escape(_outcome_words(m))}</span>'
            "</li>"
            for m in taken
        )
        + "</ul>"
        if taken
        else "none"
    )
    cells = [
        f'<th scope=row><a href="#inc-{incident.seq}">#{incident.seq}</a></th>',
        f"<td>{start}</td>",
        f"<td>{end}</td>",
        f'<td class="duration">{escape(duration_text)}</td>',
        f"<td>{what}</td>",
        f"<td>{explained}</td>",
        f"<td>{actions}</td>",
        f'<td class="repair">{escape(repair)}</td>',
    ]
    state = "open" if incident.end is None else "closed"
    return (
        f'<tr id="inc-{incident.seq}" class="incident {state}" data-seq="{incident.seq}">'
        + "".join(cells)
        + "</tr>"
    )


_CAUSES_SHOWN = 4


def _causes(causes: tuple[str, ...]) -> str:
    """Why IPv6 was down, as the daemon's verdict told it (the first layer broken, then what
    kept it so); `reconciler replay` has the rest when there were more."""
    if not causes:
        return ""
    shown = [escape(c) for c in causes[:_CAUSES_SHOWN]]
    more = len(causes) - len(shown)
    tail = f"; and {more} more (<code>reconciler replay</code>)" if more > 0 else ""
    return f'<p class="cause">Cause: {"; then ".join(shown)}{tail}</p>'


def _condition_item(condition: Condition) -> str:
    end = "still open" if condition.end is None else _time(condition.end)
    seqs = f"#{condition.seq}" + (f" to #{condition.end_seq}" if condition.end_seq else "")
    return (
        f"<li>{escape(CONDITION_NAMES[condition.kind])}: {_time(condition.start)} to "
        f"{end} ({seqs})</li>"
    )


def _explanation(incident: Incident, moments: Mapping[int, Moment]) -> str:
    if incident.explained_by is None:
        return (
            "nothing the router sees changed (the trouble lay beyond it: the path, the "
            "probes' targets, or HE)"
        )
    moment = moments.get(incident.explained_by)
    words = ""
    if moment is not None:
        changes = state_changes(moment.before, moment.after)
        words = "; ".join(changes)
    at = _time(incident.explained_at) if incident.explained_at is not None else ""
    return f"#{incident.explained_by} at {at}: {escape(words)}"


def _actions(report: Report) -> list[str]:
    parts = ['<section id="actions" aria-labelledby="actions-h">']
    parts.append('<h2 id="actions-h">Actions and why</h2>')
    if not report.actions:
        parts.append('<p class="none">No action was taken in this window.</p></section>')
        return parts
    parts += [
        "<table>",
        "<thead><tr><th scope=col>#</th><th scope=col>Started</th><th scope=col>Action</th>"
        "<th scope=col>Outcome</th><th scope=col>Why</th></tr></thead>",
        "<tbody>",
    ]
    for mark in report.actions:
        outcome = escape(_outcome_words(mark))
        if mark.outcome_seq:
            outcome += f" (#{mark.outcome_seq}, {_time(mark.outcome_at)})"
            if mark.message:
                outcome += f": {escape(mark.message)}"
        parts.append(
            f'<tr id="act-{mark.seq}" class="action o-{mark.outcome}" data-seq="{mark.seq}">'
            f'<th scope=row><a href="#act-{mark.seq}">#{mark.seq}</a></th>'
            f"<td>{_time(mark.at)}</td><td>{escape(mark.key)}</td>"
            f'<td><span class="o-{mark.outcome}">{outcome}</span></td>'
            f'<td class="why" id="why-{mark.seq}">{_why(mark, report.moments)}</td></tr>'
        )
    parts += ["</tbody>", "</table>", "</section>"]
    return parts


def _why(mark: ActionMark, moments: Mapping[int, Moment]) -> str:
    """The decision and the facts it rests on, each as replay prints it."""
    decided = moments.get(mark.seq)
    head = (
        _replay_text(decided)
        if decided is not None
        else f"#{mark.seq} decided {mark.key}: {mark.reason}"
    )
    items = []
    for cause in mark.causes:
        moment = moments.get(cause)
        if moment is None:
            items.append(f"<li>#{cause} (not kept here: <code>reconciler replay</code>)</li>")
        else:
            items.append(f"<li><pre>{escape(_replay_text(moment))}</pre></li>")
    rests = (
        f'<p class="rests">Rests on:</p><ul class="causes">{"".join(items)}</ul>'
        if items
        else '<p class="rests">Rests on no recorded fact.</p>'
    )
    return f"<pre>{escape(head)}</pre>{rests}"


def _replay_text(moment: Moment) -> str:
    changes = state_changes(moment.before, moment.after)
    return "\n".join(entry_lines(moment.envelope, changes, moment.after))


def _outcome_words(mark: ActionMark) -> str:
    if mark.unconfirmed:
        return f"failed ({mark.outcome}, unconfirmed: it may have taken effect)"
    return {
        "ok": "succeeded",
        "temporary": "failed (temporary)",
        "permanent": "failed (permanent)",
        "in-flight": "no outcome: the daemon stopped during it",
        "pending": "no outcome yet",
    }[mark.outcome]


# --- small words ----------------------------------------------------------------------------


def _when(at: float) -> str:
    return (iso(at) or "").replace("T", " ").rstrip("Z")


def _time(at: float | None) -> str:
    if at is None:
        return ""
    text = iso(at) or ""
    return f'<time datetime="{text}">{escape(_when(at))}</time>'


def _span(seconds: float) -> str:
    """Durations as the tables show them: tenths under ten seconds, else replay's form."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    return duration(seconds)


def _opt_duration(seconds: float | None) -> str:
    return "-" if seconds is None else _span(seconds)


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return "no verdict"
    if fraction >= 1.0:
        return "100%"
    return f"{math.floor(fraction * 10000) / 100:.2f}%"


_STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d1f21;--muted:#5f6368;--line:#d0d4d8;
--ok:#2e7d32;--bad:#c62828;--warn:#ef8f00;--unk:#bcc1c6;--stop:#e3e5e8;--outage:#c62828;
--temporary:#ef8f00;--permanent:#8e0000;--inflight:#6a3fb5;--panel:#f6f7f8}
@media (prefers-color-scheme:dark){:root{--bg:#16181b;--fg:#e4e6e8;--muted:#a0a6ad;
--line:#3a3f45;--ok:#5cb860;--bad:#ef5350;--warn:#ffb74d;--unk:#50565c;--stop:#2b2f34;
--outage:#ff6b6b;--temporary:#ffb74d;--permanent:#ff8a80;--inflight:#b39ddb;--panel:#22262b}}
body{background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;
max-width:1200px;padding:0 1em}
h1{margin:0 0 .2em;font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid var(--line)}
.window{font-size:1.15em;margin:.2em 0}.note,.hint{color:var(--muted)}
.empty{font-size:1.3em;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border:1px solid var(--line);padding:.3em .45em;text-align:left;vertical-align:top}
thead th{background:var(--panel)}tfoot th,tfoot td{font-weight:bold}
td ul{margin:0;padding-left:1.1em}pre{margin:0;white-space:pre-wrap;font-size:.9em}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.4em 0}
.legend li{display:flex;align-items:center;gap:.35em}
figure.row{margin:.4em 0 1em}figcaption{color:var(--muted);font-size:.9em}
svg.lanes{width:100%;height:auto;display:block}
.s.ok{fill:var(--ok)}.s.bad{fill:var(--bad)}.s.warn{fill:var(--warn)}.s.unk{fill:var(--unk)}
.s.stop{fill:var(--stop)}.s.outage{fill:var(--outage);fill-opacity:.25}
.seg-label{font-size:11px;fill:#fff;pointer-events:none}.seg-label.warn{fill:#000}
.lane-name{font-size:12px;fill:var(--fg)}.tick{font-size:10px;fill:var(--muted)}
.grid{stroke:var(--line);stroke-width:.5}.track{stroke:var(--line);stroke-width:1}
rect.outage{fill:var(--outage);fill-opacity:.22}rect.outage-bar{fill:var(--outage)}
.m{stroke:var(--bg);stroke-width:1.5}.m.o-ok{fill:var(--ok)}.m.o-temporary{fill:var(--temporary)}
.m.o-permanent{fill:var(--permanent)}.m.o-in-flight,.m.o-pending{fill:var(--inflight)}
a.mark:focus{outline:none}a.mark:focus circle,a.mark:hover circle{stroke:var(--fg);stroke-width:2.5}
span.o-ok{color:var(--ok)}span.o-temporary{color:var(--temporary)}
span.o-permanent{color:var(--permanent)}span.o-in-flight,span.o-pending{color:var(--inflight)}
tr:target{outline:2px solid var(--fg)}
a{color:inherit}
#why{position:absolute;z-index:10;max-width:36em;background:var(--panel);color:var(--fg);
border:1px solid var(--line);border-radius:4px;padding:.5em .7em;box-shadow:0 2px 8px #0004;
font-size:.85em}
details.words summary{cursor:pointer;color:var(--muted)}
@media print{:root{--bg:#fff;--fg:#000;--muted:#444;--line:#999;--panel:#eee;--ok:#2e7d32;
--bad:#c62828;--warn:#ef8f00;--unk:#bcc1c6;--stop:#e3e5e8}
body{max-width:none;margin:0;font-size:10pt}#why{display:none}
svg,.legend{-webkit-print-color-adjust:exact;print-color-adjust:exact}
figure.row,tr{break-inside:avoid}h2{break-after:avoid}}
"""

# Shows the "why" of the action under the pointer or the keyboard focus, copied from the
# actions table (where it is for every reader anyway). Plain DOM calls, nothing else.
_SCRIPT = """
(function () {
  // Tooltips for the timeline's spans and marks, made here rather than written as <title>
  // elements, so that a text browser (lynx -dump) does not print them all a second time.
  var titled = document.querySelectorAll('svg [data-title]');
  for (var i = 0; i < titled.length; i++) {
    var title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = titled[i].getAttribute('data-title');
    titled[i].appendChild(title);
  }
  var panel = document.getElementById('why');
  function show(el) {
    var seq = el.getAttribute('data-why');
    var source = document.getElementById('why-' + seq);
    if (!source) { return; }
    panel.innerHTML = '<strong>#' + seq + '</strong>' + source.innerHTML;
    panel.setAttribute('data-seq', seq);
    panel.hidden = false;
    var box = el.getBoundingClientRect();
    var left = Math.min(box.left, document.documentElement.clientWidth - panel.offsetWidth - 8);
    panel.style.left = (Math.max(left, 4) + window.scrollX) + 'px';
    panel.style.top = (box.bottom + 6 + window.scrollY) + 'px';
  }
  function hide() { panel.hidden = true; }
  function target(event) {
    return event.target.closest ? event.target.closest('[data-why]') : null;
  }
  function enter(e) { var el = target(e); if (el) { show(el); } }
  function leave(e) { if (target(e)) { hide(); } }
  document.addEventListener('mouseover', enter);
  document.addEventListener('mouseout', leave);
  document.addEventListener('focusin', enter);
  document.addEventListener('focusout', leave);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') { hide(); } });
  var wanted = /[?&]why=(\\d+)/.exec(window.location.search);
  if (wanted) {
    var mark = document.querySelector('a.mark[data-why="' + wanted[1] + '"]');
    if (mark) { mark.focus(); show(mark); }
  }
})();
"""
