"""Prometheus metrics: the exposition, node_exporter's textfile, and the `/metrics` endpoint.

What is shown comes from one `Reading`: the telemetry (reconciler.model.telemetry: counters
since the daemon started, and the outage under way), the observed state, what the plan holds
back, and the event log's size. The daemon builds readings from what it records; `reconciler
metrics` builds one from the log, so both print the same exposition. prometheus_client
renders it (its registry and text format), nothing here writes the format by hand.

`Publisher` is the daemon's side: it rewrites the textfile atomically (a temporary file
beside it, then rename, so node_exporter never reads half a file) whenever something
changed and at least once per probe interval, and serves `/metrics` over HTTP when
`[metrics] listen` is set (reconciler.metrics_http: a bounded server of our own, since
prometheus_client's has neither a connection cap nor time-outs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attrs import frozen
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from reconciler import __version__
from reconciler.atomicfile import write_atomically
from reconciler.errors import error_line
from reconciler.metrics_http import MetricsServer
from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.config import MetricsConfig
from reconciler.model.failover import BUDGET_WINDOW
from reconciler.model.plan import Held, HoldReason
from reconciler.model.state import FAMILIES, ObservedState
from reconciler.model.telemetry import Histogram, Telemetry
from reconciler.model.verdict import CHECKS, down_reason

__all__ = [
    "ListenError",
    "Publisher",
    "Reading",
    "exposition",
    "listen",
    "log_bytes",
]

_log = logging.getLogger(__name__)

# A burst of facts (a repair records a dozen) is one rewrite, not a dozen.
_MIN_WRITE_GAP = 0.1


@frozen
class Reading:
    """Everything one exposition shows, read at one moment."""

    telemetry: Telemetry
    state: ObservedState
    held: tuple[Held, ...]
    log_seq: int
    log_bytes: int
    now: float
    dropped_unrecorded: int = 0  # notifications dropped that no hook-ran fact reports yet


def exposition(reading: Reading) -> bytes:
    """The text exposition format of `reading`, as prometheus_client renders it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReadingCollector(lambda: reading))
    return bytes(generate_latest(registry))


def log_bytes(events_dir: Path) -> int:
    """The event log's size on disk: its segment files, added up."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(events_dir):
            with contextlib.suppress(OSError):
                if entry.is_file():
                    total += entry.stat().st_size
    return total


class _ReadingCollector(Collector):
    def __init__(self, read: Callable[[], Reading]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        return _families(self._read())


def _wan_families(state: ObservedState, now: float) -> Iterator[Any]:
    """Several WANs: which one the tunnel is on, and each one's health (nothing with one)."""
    view = state.failover
    if view is None:
        return
    active = view.active or (state.wan.interface if state.wan is not None else None)
    interfaces = sorted({h.interface for h in view.health} | ({active} if active else set()))
    gauge = GaugeMetricFamily(
        "reconciler_active_wan", "1 for the WAN the tunnel is on, else 0", labels=["interface"]
    )
    healthy = GaugeMetricFamily(
        "reconciler_wan_up",
        "1 when the WAN's own probes say it works (after hysteresis), else 0",
        labels=["interface"],
    )
    for interface in interfaces:
        gauge.add_metric([interface], 1.0 if interface == active else 0.0)
        health = view.of(interface)
        healthy.add_metric(
            [interface], 1.0 if health is not None and health.status == "up" else 0.0
        )
    yield gauge
    yield healthy
    yield GaugeMetricFamily(
        "reconciler_wan_switches_last_hour",
        "failovers and failbacks within the last hour (each one an HE update; see the budget)",
        value=sum(1 for t in view.switches if now - BUDGET_WINDOW < t <= now),
    )


def _families(reading: Reading) -> Iterator[Any]:
    state, telemetry = reading.state, reading.telemetry
    up = GaugeMetricFamily(
        "reconciler_up",
        "1 when the family's probes say it works (after hysteresis), 0 when down or unknown",
        labels=["family"],
    )
    failures = GaugeMetricFamily(
        "reconciler_probe_consecutive_failures",
        "failed probes in a row",
        labels=["family"],
    )
    for family in FAMILIES:
        probe = state.probe(family)
        up.add_metric([family], 1.0 if probe.status == "up" else 0.0)
        failures.add_metric([family], probe.consecutive_failed)
    yield up
    yield failures
    last_rtt = GaugeMetricFamily(
        "reconciler_probe_rtt_last_seconds",
        "round-trip time of the last successful probe",
        labels=["family"],
    )
    for family, seconds in sorted(telemetry.last_rtt.items()):
        last_rtt.add_metric([family], seconds)
    yield last_rtt
    rtt = HistogramMetricFamily(
        "reconciler_probe_rtt_seconds", "round-trip times of successful probes", labels=["family"]
    )
    for family, histogram in sorted(telemetry.rtt.items()):
        rtt.add_metric([family], histogram.cumulative(), histogram.total)
    yield rtt
    wan = state.wan
    if wan is not None and wan.address is not None:
        yield InfoMetricFamily(
            "reconciler_wan_address",
            "the WAN interface's IPv4 address",
            value={"interface": wan.interface, "address": wan.address},
        )
    yield from _wan_families(state, reading.now)
    yield GaugeMetricFamily(
        "reconciler_he_endpoint_matches",
        "1 when HE's endpoint is known to be the WAN address, else 0",
        value=1.0 if _endpoint_matches(state) else 0.0,
    )
    yield _counter(
        "reconciler_actions",
        "actions run, by action and result (ok, temporary, permanent)",
        ["action", "result"],
        {(a, r): n for (a, r), n in telemetry.actions.items()},
    )
    yield _counter(
        "reconciler_he_answers",
        "HE's answers to endpoint updates, by answer",
        ["answer"],
        {(a,): n for a, n in telemetry.he_answers.items()},
    )
    yield _histogram(
        "reconciler_repair_seconds",
        "time from an outage's start to IPv6 across the tunnel again",
        telemetry.repairs,
    )
    yield CounterMetricFamily(
        "reconciler_outage_seconds",
        "seconds without IPv6 across the tunnel (the outage under way included)",
        value=telemetry.outage_total(reading.now),
    )
    last_update = max(
        (
            r.last_success_at
            for r in state.records_of(UpdateHeEndpoint.KIND)
            if r.last_success_at is not None
        ),
        default=None,
    )
    if last_update is not None:
        yield GaugeMetricFamily(
            "reconciler_he_last_update_success_timestamp_seconds",
            "when HE last accepted an endpoint update (Unix time)",
            value=last_update,
        )
    holds = GaugeMetricFamily(
        "reconciler_holds", "actions the plan holds back, by reason", labels=["reason"]
    )
    for reason in typing.get_args(HoldReason):
        holds.add_metric([reason], sum(1 for h in reading.held if h.why == reason))
    yield holds
    yield _down_reason(reading)
    yield GaugeMetricFamily(
        "reconciler_log_last_seq", "the event log's last sequence number", value=reading.log_seq
    )
    yield GaugeMetricFamily(
        "reconciler_log_size_bytes", "the event log's size on disk", value=reading.log_bytes
    )
    if telemetry.started_at is not None:
        yield GaugeMetricFamily(
            "reconciler_start_time_seconds",
            "when the daemon started (Unix time); counters count from then",
            value=telemetry.started_at,
        )
    yield InfoMetricFamily(
        "reconciler_build",
        "the version of reconciler (that of the running daemon, when the log names it)",
        value={"version": telemetry.version or __version__},
    )
    yield _counter(
        "reconciler_notifications",
        "notifications, by event (whether or not a hook takes them)",
        ["event"],
        {(e,): n for e, n in telemetry.notices.items()},
    )
    yield _counter(
        "reconciler_hook_runs",
        "[notify] hook runs, by outcome (ok, failed, timeout, not-started)",
        ["outcome"],
        {(o,): n for o, n in telemetry.hook_runs.items()},
    )
    yield CounterMetricFamily(
        "reconciler_notifications_dropped",
        "notifications dropped because the hook queue was full",
        value=telemetry.hook_dropped + reading.dropped_unrecorded,
    )


def _down_reason(reading: Reading) -> GaugeMetricFamily:
    """1 for the layer the facts show broken while IPv6 is down (doctor's check names),
    "none" while it is not: one series per layer, so an alert can name it."""
    reason = down_reason(reading.state, held=reading.held)
    current = reason.check if reason is not None else "none"
    family = GaugeMetricFamily(
        "reconciler_down_reason",
        "why IPv6 is down, from facts alone: 1 for the first broken layer (none: not down)",
        labels=["reason"],
    )
    for name in ("none", *(spec.name for spec in CHECKS)):
        family.add_metric([name], 1.0 if name == current else 0.0)
    return family


def _counter(
    name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(values.items()):
        family.add_metric(list(key), count)
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total
    )


def _endpoint_matches(state: ObservedState) -> bool:
    wan, endpoint = state.wan, state.endpoint
    if wan is None or wan.address is None or endpoint is None:
        return False
    return wan.address in (endpoint.address, endpoint.for_local)


# --- the daemon's side ---------------------------------------------------------------------


class ListenError(Exception):
    """The `/metrics` address cannot be listened on (taken, or not this machine's)."""


def listen(address: tuple[str, int], read: Callable[[], Reading]) -> MetricsServer:
    """Serve `/metrics` on `address` from `read()` at each scrape; the server (its
    `shutdown()` and `server_close()` stop it). ListenError when it cannot bind."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReadingCollector(read))
    try:
        return MetricsServer(address, lambda: bytes(generate_latest(registry)))
    except OSError as exc:
        raise ListenError(f"{_shown(address)}: {exc.strerror or error_line(exc)}") from None


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Publisher:
    """Keeps the textfile current and serves `/metrics`, from `read()` at each moment."""

    def __init__(self, config: MetricsConfig, read: Callable[[], Reading], interval: float) -> None:
        self._config = config
        self._read = read
        self._interval = interval
        self._server: Any = None
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.writes = 0

    @property
    def config(self) -> MetricsConfig:
        return self._config

    def start(self) -> None:
        """Bind the HTTP endpoint (ListenError) and start the textfile writer."""
        if self._config.listen is not None:
            self._server = listen(self._config.listen, self._read)
        if self._config.textfile is not None:
            self._thread = threading.Thread(target=self._write_loop, name="metrics", daemon=True)
            self._thread.start()

    def reconfigured(self, config: MetricsConfig, interval: float) -> Publisher:
        """A publisher for `config` that keeps this one's server when the address is the
        same. Binds a new address first (ListenError leaves this one as it was); the caller
        then stops this one with `stop(keep_server=...)` and starts the new one."""
        successor = Publisher(config, self._read, interval)
        if config.listen is not None and config.listen == self._config.listen:
            successor._server = self._server
        elif config.listen is not None:
            successor._server = listen(config.listen, self._read)
        return successor

    def shares_server(self, other: Publisher) -> bool:
        """Whether this publisher serves /metrics through `other`'s server."""
        return self._server is not None and self._server is other._server

    def start_writer(self) -> None:
        if self._config.textfile is not None and self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name="metrics", daemon=True)
            self._thread.start()

    def changed(self) -> None:
        """Something the metrics show changed: rewrite the textfile soon."""
        self._changed.set()

    def stop(self, *, keep_server: bool = False) -> None:
        self._stopping.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._server is not None and not keep_server:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    def remove_textfile(self) -> None:
        """Remove the textfile this publisher wrote (a reload moved it elsewhere)."""
        path = self._config.textfile
        if path is not None and self.writes:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def write_now(self) -> None:
        """Render and write the textfile (errors are logged once per streak)."""
        path = self._config.textfile
        if path is None:
            return
        try:
            data = exposition(self._read())
            # node_exporter runs as its own user, and may own the directory: atomicfile
            # never writes through a link planted there
            write_atomically(path, data, mode=0o644, durable=False)  # rewritten anyway
        except Exception as exc:  # a full disk must not stop the daemon, nor flood its log
            if not self._failing:
                _log.warning("metrics: cannot write %s: %s", path, error_line(exc))
            self._failing = True
            return
        if self._failing:
            _log.info("metrics: writing %s again", path)
        self._failing = False
        self.writes += 1

    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            self.write_now()
            self._changed.wait(self._interval)
            self._changed.clear()
            if not self._stopping.is_set():
                time.sleep(_MIN_WRITE_GAP)
