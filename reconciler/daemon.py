"""The daemon: observers on a schedule, kernel notices, and one level-based reconcile loop.

Threads, and why each exists:
- APScheduler runs the periodic observers (probes, WAN, tunnel, hostname file, HE's
  endpoint), each at its interval with jitter, never two runs of one job at once, on kept
  daemon threads (reconciler.workers: a thread per run let RSS creep; concurrent.futures'
  pool joins its threads at interpreter exit, which would let a slow HE request hold the
  process past its 5 s stop).
- "kernel-notice" observes WAN and tunnel at once when the platform's watch reports a change
  to the WAN or tunnel interface, or lost messages (other interfaces are ignored). It is a
  thread of its own with a coalescing flag, so a notice arriving during an observation is
  never dropped, which APScheduler's max_instances would do.
- "reconcile" makes the first observation of everything, then runs reconcile passes
  (reconciler.reconcile.reconcile_once: plan on the folded state, execute); it sleeps on
  the recorder until a new fact arrives or the earliest held action becomes due. One pass
  at a time, always.
- The main thread only waits for signals (a self-pipe: handlers do nothing but write a byte)
  and performs reloads and the orderly stop.

A reload is all-or-nothing: the new configuration, platform, HE client, observer jobs and
kernel watch are all built first; only when every one of them exists is ConfigLoaded
recorded and the daemon switched over. Any failure leaves the old configuration, jobs and
watch exactly as they were. SIGHUPs that arrive together are one reload, and a reload that
finds the file's digest unchanged records nothing.

Stopping (SIGTERM/SIGINT) is bounded: the running action gets STOP_GRACE seconds to finish.
An action that has not finished by then (an HE update waiting out its read timeout, a restart
command) is abandoned on its thread: DaemonStopped names it and says its outcome is unknown,
the recorder refuses every later fact, and the process exits 0 within 5 s. Its ActionStarted
stays in the log without an outcome, which the planner counts as an attempt (so a restarted
daemon sends no second HE update within min_update_interval).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from attrs import frozen

from reconciler import __version__
from reconciler.errors import ConfigError, error_line
from reconciler.eventlog import apply_retention
from reconciler.metrics import ListenError, Publisher, Reading, log_bytes
from reconciler.model.config import Config
from reconciler.model.desired import desired
from reconciler.model.facts import DaemonStarted, DaemonStopped, Envelope
from reconciler.model.plan import Held, plan
from reconciler.model.state import ObservedState
from reconciler.model.telemetry import Telemetry
from reconciler.reconcile import (
    active_config,
    config_loaded_fact,
    daemon_stopped_fact,
    earliest_due,
    failover_due,
    follow_failover,
    reconcile_once,
)
from reconciler.recorder import Recorder, RecorderClosedError
from reconciler.runclock import RunClock
from reconciler.statedir import events_dir
from reconciler.workers import Workers
from reconciler.world import observers
from reconciler.world.executors import Executor
from reconciler.world.hooks import HookRunner
from reconciler.world.platform import ChangeNotice, Platform, Watch
from reconciler.world.runner import CommandRunner

__all__ = ["STOP_GRACE", "Daemon"]

_log = logging.getLogger(__name__)

# Between two passes the loop never sleeps longer than this: a backstop against a clock
# jump or a lost wake-up, long enough to cost nothing when idle.
_MAX_IDLE_WAIT = 300.0
# After an unexpected error in a pass, wait this long before the next one (no tight loop).
_ERROR_PAUSE = 5.0
# How long the running action (and the other threads) may take to finish after a stop
# request. The promise is an exit within 5 s; the rest is for DaemonStopped, the snapshot
# and the interpreter's exit.
STOP_GRACE = 4.0
# While a reload waits for the running action, look for a stop request this often.
_RELOAD_POLL = 0.1
# How often the clock watch compares the wall clock with the monotonic clock, and how far
# the wall clock must move back against it to count as a step.
_CLOCK_WATCH = 2.0
_CLOCK_STEP = 2.0


class _JobExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler is untyped
    """An APScheduler executor on the daemon's own kept worker threads (reconciler.workers).

    Not APScheduler's ThreadPoolExecutor: concurrent.futures joins its threads when the
    interpreter exits, so one observer waiting on HE's read timeout would hold the stopping
    process for up to that long. max_instances=1 keeps it to one thread per job.
    """

    def __init__(self) -> None:
        super().__init__()
        self._workers = Workers("job")

    def shutdown(self, wait: bool = True) -> None:
        self._workers.close()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def work() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)

        self._workers.submit(work)


class Daemon:
    """`reconciler run`: observe, reconcile, repeat, until SIGTERM/SIGINT."""

    def __init__(
        self,
        config: Config,
        log: Any,
        *,
        snapshots: Any = None,
        checkpoints: Any = None,
        platform_factory: Callable[[Config], Platform] | None = None,
        client_factory: Callable[[Config], Any] | None = None,
        config_loader: Callable[[Any], Config] | None = None,
        clock: Callable[[], float] = time.time,
        netns: str | None = None,
        configure_log: Callable[[str], object] | None = None,
        probe_runner: CommandRunner | None = None,
    ) -> None:
        """`configure_log(target)` routes the log lines to [daemon] log's target; a reload
        calls it with the new config's (None: the caller keeps logging as it is).
        `probe_runner` runs the probes' pings (the system's when None; tests script it)."""
        self._netns = netns
        self._probe_runner = probe_runner
        self._configure_log = configure_log
        # Wall-clock time that does not run backwards within a run (reconciler.runclock):
        # facts and plans use it, so a clock step back holds nothing for the step's length.
        self._clock = RunClock(clock)
        self._wall = clock
        self._platform_factory = platform_factory or (
            lambda c: observers.make_platform(c, netns=netns)
        )
        self._client_factory = client_factory or _default_client
        self._config_loader = config_loader or _default_loader
        self._log = log
        self._config = config
        self._recorder = Recorder(
            log,
            self._clock,
            snapshots=snapshots,
            after_snapshot=self._retain,
            quiet_summary_interval=config.daemon.quiet_summary_interval,  # read at start only
            checkpoints=checkpoints,
        )
        self._clock.not_before(self._recorder.state.at)  # the last run's facts are not ahead
        # As loaded; self._config is the same with the active WAN's part (several WANs).
        self._loaded = config
        self._config = config = active_config(config, self._recorder.state)
        self._platform = self._platform_factory(config)
        self._client = self._client_factory(config)
        self._executor = Executor(self._platform, self._client, self._recorder)
        self._scheduler = BackgroundScheduler(
            executors={"default": _JobExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._watch: Watch | None = None
        self._work = threading.Lock()  # one reconcile pass, or one reload, at a time
        self._stopping = threading.Event()
        self._kick = threading.Condition()
        self._kick_pending: str | None = None  # "links" or "all"
        self._requests: deque[str] = deque()
        self._finished = False
        self._wake_r, self._wake_w = os.pipe()
        self._wakeup_fd_set = False
        os.set_blocking(self._wake_w, False)
        self._threads: list[threading.Thread] = []
        self._last_held: tuple[tuple[str, float | None], ...] = ()
        self._started_seq = 0  # the seq of this run's DaemonStarted
        # Notifications and metrics: counted as each fact is recorded (the recorder calls
        # _on_fact under its lock), hooks and the textfile/HTTP side on threads of their own.
        self._telemetry = Telemetry.starting_on(self._recorder.state, config.reconcile)
        self._telemetry_lock = threading.Lock()
        self._hooks = HookRunner(config.notify, lambda fact: self._recorder.record(fact, "notify"))
        self._publisher = Publisher(config.metrics, self._reading, _metrics_interval(config))
        self._recorder.listen(self._on_fact)

    @property
    def recorder(self) -> Recorder:
        return self._recorder

    @property
    def config(self) -> Config:
        return self._config

    # -- requests from signal handlers and other threads ------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the daemon to stop (safe from a signal handler or any thread)."""
        self._request(f"stop:{reason}")

    def request_reload(self) -> None:
        """Ask the daemon to reload its configuration (safe from a signal handler)."""
        self._request("reload")

    def _request(self, what: str) -> None:
        if self._finished:  # the pipe is closed (its number may belong to another file now)
            return
        self._requests.append(what)  # deque.append is atomic: no lock a handler could hold
        with contextlib.suppress(BlockingIOError):  # a full pipe: the main thread is awake
            os.write(self._wake_w, b"\0")

    # -- the main thread --------------------------------------------------------------------

    def _retain(self, snapshot_seq: int) -> None:
        """Drop old log segments the snapshot covers, as [daemon] retain_days / retain_mb say."""
        daemon = self._config.daemon
        if not (daemon.retain_days or daemon.retain_mb):
            return
        removed = apply_retention(
            self._log,
            snapshot_seq,
            now=self._clock(),
            max_age=daemon.retain_days * 86400 or None,
            max_bytes=int(daemon.retain_mb * 2**20) or None,
        )
        for path in removed:
            _log.info("retention: removed %s (covered by the snapshot at #%d)", path, snapshot_seq)

    def run(self, *, install_signals: bool = True) -> int:
        """Start everything, wait for signals, stop in order. Returns the exit status."""
        try:  # before anything is recorded: never start half-configured
            self._publisher.start()
        except ListenError as exc:
            raise ConfigError(
                self._config.path, [f"{self._config.path}: metrics.listen: {exc}"]
            ) from None
        self._hooks.start()
        if install_signals:
            self._install_signal_handlers()
        started = self._recorder.record(
            DaemonStarted(pid=os.getpid(), version=__version__), "daemon"
        )
        self._started_seq = started.seq
        self._recorder.record(config_loaded_fact(self._loaded), "daemon")
        behind = self._clock.behind
        if behind > 1.0:
            _log.warning(
                "the system clock reads %.0f s earlier than the newest fact in the log: "
                "times go on from the log's until the clock catches up",
                behind,
            )
        in_flight = [r.key for r in self._recorder.state.actions.values() if r.in_flight]
        if in_flight:
            _log.warning("interrupted before: %s (no outcome recorded)", ", ".join(in_flight))
        _log.info(
            "started: pid %d, config %s (%s), %d facts in the log",
            os.getpid(),
            self._config.path,
            self._config.digest[:12],
            self._recorder.last_seq,
        )
        self._install_jobs(_observer_jobs(self, self._config))
        self._scheduler.start()
        self._start_watch()
        self._start_thread("kernel-notice", self._notice_loop)
        self._start_thread("reconcile", self._reconcile_loop)
        self._start_thread("clock-watch", self._clock_watch)
        # An older log lacks checkpoints: built in the background, never before a repair.
        self._start_thread(
            "checkpoints", lambda: self._recorder.build_checkpoints(self._stopping.is_set)
        )
        try:
            reason = self._serve_requests()
        except BaseException as exc:  # stop the threads and record DaemonStopped even so
            self._shutdown(f"error: {error_line(exc)}")
            raise
        self._shutdown(reason)
        return 0

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        # The kernel may deliver a signal to any of our threads. Python runs the handler on
        # the main thread only, and only once that thread runs again: sleeping in select()
        # it would not, until something else woke it (a SIGHUP went unanswered). The C-level
        # handler writes to this fd whichever thread took the signal, so select() wakes.
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._wakeup_fd_set = True

    def _serve_requests(self) -> str:
        while True:
            select.select([self._wake_r], [], [])
            os.read(self._wake_r, 4096)
            reload = False
            while self._requests:
                what = self._requests.popleft()
                if what.startswith("stop:"):
                    return what.removeprefix("stop:")
                reload = reload or what == "reload"
            if not reload:
                continue
            # One reload answers every SIGHUP received so far: it reads the file as it is
            # now. SIGHUPs arriving during it make one more, which finds the digest unchanged
            # unless the file changed again meanwhile.
            try:
                self._reload()
            except Exception as exc:  # a bug in a reload must not end the daemon
                _log.error("reload failed: %s", error_line(exc))

    def _shutdown(self, reason: str) -> None:
        deadline = time.monotonic() + STOP_GRACE
        _log.info("stopping (%s)", reason)
        self._stopping.set()
        self._recorder.wake()
        with self._kick:
            self._kick.notify_all()
        if self._watch is not None:
            self._watch.stop()
        # Running observer jobs are not waited for: they are bounded by their own timeouts,
        # live on daemon threads, and the closed recorder refuses what they find later.
        self._scheduler.shutdown(wait=False)
        for thread in self._threads:
            # The reconcile thread finishes the running action, if it can within the grace.
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = self._recorder.record_final(
            lambda state: daemon_stopped_fact(reason, state, self._started_seq), "daemon"
        )
        assert isinstance(stopped.fact, DaemonStopped)
        if stopped.fact.reason != reason:
            _log.warning("%s", stopped.fact.reason)
        # The daemon-stopped hook gets what is left of the grace (half a second at least).
        self._hooks.stop(max(deadline, time.monotonic() + 0.5))
        self._publisher.write_now()
        self._publisher.stop()
        unwritten = self._recorder.flush()
        if unwritten:  # the stop is still a stop (exit 0); what is lost is said
            _log.error("stopping with %d facts the event log could not take: lost", unwritten)
        self._recorder.snapshot()
        _close_quietly(self._client)
        _close_quietly(self._platform)
        self._finished = True
        if self._wakeup_fd_set:
            signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)
        _log.info("stopped")

    def _reload(self) -> None:
        path = self._config.path
        try:
            new = self._config_loader(path)
        except ConfigError as exc:
            for problem in exc.problems:
                _log.error("reload refused: %s", problem)
            _log.error("keeping the configuration loaded before (%s)", self._config.digest[:12])
            return
        except Exception as exc:  # unreadable, or a loader bug: either way the old one stays
            _log.error("reload refused: %s; keeping the old configuration", error_line(exc))
            return
        if new.daemon.state_dir != self._config.daemon.state_dir:
            _log.error("reload refused: daemon.state_dir cannot change without a restart")
            return
        if new.digest == self._config.digest:
            _log.info("reload: %s unchanged (%s)", new.path, new.digest[:12])
            return
        loaded, new = new, active_config(new, self._recorder.state)
        try:  # a new /metrics address is bound first: taken, the old configuration stays
            publisher = self._publisher.reconfigured(new.metrics, _metrics_interval(new))
        except ListenError as exc:
            _log.error("reload refused: %s: metrics.listen: %s", new.path, exc)
            _log.error("keeping the configuration loaded before (%s)", self._config.digest[:12])
            return
        built = self._build(new)
        if built is None:
            publisher.stop(keep_server=publisher.shares_server(self._publisher))
            return
        platform, client, jobs, watch = built
        if not self._acquire_work_unless_stopping():
            _log.warning("reload of %s abandoned: the daemon is stopping", new.path)
            publisher.stop(keep_server=publisher.shares_server(self._publisher))
            _discard(watch, client, platform)
            return
        try:  # never swap the world under a running action
            try:
                self._recorder.record(config_loaded_fact(loaded), "daemon")
            except BaseException:
                publisher.stop(keep_server=publisher.shares_server(self._publisher))
                _discard(watch, client, platform)
                raise
            # From here on nothing can fail: everything was built and checked above.
            old_watch, old_client, old_platform = self._watch, self._client, self._platform
            self._config, self._platform, self._client = new, platform, client
            self._loaded = loaded
            self._executor = Executor(platform, client, self._recorder)
            self._hooks.reconfigure(new.notify)
            with self._telemetry_lock:
                self._telemetry.tracker = attrs.evolve(
                    self._telemetry.tracker,
                    restart_limit=new.reconcile.restart_limit,
                    restart_window=new.reconcile.restart_window,
                )
            old_publisher, self._publisher = self._publisher, publisher
            old_publisher.stop(keep_server=publisher.shares_server(old_publisher))
            if old_publisher.config.textfile != new.metrics.textfile:
                old_publisher.remove_textfile()  # node_exporter would show it, stale, forever
            publisher.start_writer()
            self._install_jobs(jobs)
            self._watch = watch
        finally:
            self._work.release()
        _discard(old_watch, old_client, old_platform)
        if not new.daemon.watch_kernel:
            _log.info("kernel notifications off: polling only")
        self._apply_log_target(new)
        _log.info("reloaded %s (%s)", new.path, new.digest[:12])
        self._kick_observation("all")

    def _build(self, new: Config) -> tuple[Platform, Any, list[_Job], Watch | None] | None:
        """Everything `new` needs, made and checked before anything is switched; None (the
        reason logged, whatever was made closed again) when any part fails."""
        platform: Platform | None = None
        client: Any = None
        try:
            platform = self._platform_factory(new)
            client = self._client_factory(new)
            jobs = _observer_jobs(self, new)
            watch = platform.watch(self._on_notice) if new.daemon.watch_kernel else None
        except Exception as exc:
            _discard(None, client, platform)
            _log.error("reload refused: %s; keeping the old configuration", error_line(exc))
            return None
        return platform, client, jobs, watch

    def _apply_log_target(self, config: Config) -> None:
        """ConfigLoaded says the new config took effect: [daemon] log too."""
        if self._configure_log is None:
            return
        try:
            self._configure_log(config.daemon.log)
        except Exception as exc:  # the old handler is still in place: say so there
            _log.error("cannot log to %s: %s", config.daemon.log, error_line(exc))

    def _acquire_work_unless_stopping(self) -> bool:
        """Take the work lock for a reload; give up (False) when a stop request arrives
        while a running action holds it, so a reload never delays a stop."""
        while not self._work.acquire(timeout=_RELOAD_POLL):
            if any(request.startswith("stop:") for request in tuple(self._requests)):
                return False
        return True

    # -- observers --------------------------------------------------------------------------

    def _safely(self, name: str, observe: Callable[[], object]) -> None:
        if self._stopping.is_set():
            return
        try:
            observe()
        except RecorderClosedError:
            _log.debug("observer %s finished after the stop: not recorded", name)
        except Exception as exc:  # one failed observation must not stop the others
            _log.warning("observer %s failed: %s", name, error_line(exc))

    def _observe_everything(self) -> None:
        config, platform = self._config, self._platform
        self._safely("wan", lambda: observers.observe_wan(platform, self._recorder))
        self._observe_tunnel_side(config, platform)
        for family in sorted(config.probes):
            self._observe_probe(family)
        for wan in config.failover.wans if config.failover is not None else ():
            self._observe_wan_probe(wan.interface)
        self._observe_endpoint()

    def _observe_tunnel_side(self, config: Config, platform: Platform) -> None:
        self._safely("tunnel", lambda: observers.observe_tunnel(platform, self._recorder))
        self._safely(
            "hostname",
            lambda: observers.observe_hostname_file(config, platform, self._recorder),
        )

    def _observe_probe(self, family: str) -> None:
        config = self._config
        self._safely(
            f"probe:{family}",
            lambda: observers.observe_probe(
                config, family, self._recorder, netns=self._netns, runner=self._probe_runner
            ),
        )

    def _observe_wan_probe(self, interface: str) -> None:
        config = self._config
        self._safely(
            f"wan-probe:{interface}",
            lambda: observers.observe_wan_probe(
                config, interface, self._recorder, netns=self._netns, runner=self._probe_runner
            ),
        )

    def _observe_endpoint(self) -> None:
        config, client = self._config, self._client
        self._safely("he", lambda: observers.observe_endpoint(config, client, self._recorder))

    def _install_jobs(self, jobs: list[_Job]) -> None:
        """Replace the scheduler's jobs with `jobs` (their triggers were checked when built)."""
        self._scheduler.remove_all_jobs()
        for job in jobs:
            self._scheduler.add_job(
                job.func, job.trigger, id=job.job_id, name=job.job_id, replace_existing=True
            )

    # -- kernel notices ---------------------------------------------------------------------

    def _start_watch(self) -> None:
        if not self._config.daemon.watch_kernel:
            _log.info("kernel notifications off: polling only")
            return
        try:
            self._watch = self._platform.watch(self._on_notice)
        except Exception as exc:  # polling still works: say so and carry on
            _log.warning("cannot watch the kernel (%s): polling only", error_line(exc))

    def _on_notice(self, notice: ChangeNotice) -> None:
        if notice.kind == "desync":  # messages were lost: anything may have changed
            _log.debug("kernel: desync")
            self._kick_observation("all")
            return
        config = self._config
        # A LAN, a privacy address or a bridge changing says nothing about the WAN or the
        # tunnel, and each observation costs two fsync'd facts. A notice naming no interface
        # may be about either.
        if notice.interface is not None and notice.interface not in (
            config.wan.interface,
            config.tunnel.interface,
        ):
            return
        _log.debug("kernel: %s %s", notice.kind, notice.interface or "")
        self._kick_observation("links")

    def _kick_observation(self, scope: str) -> None:
        with self._kick:
            if self._kick_pending != "all":
                self._kick_pending = scope
            self._kick.notify()

    def _notice_loop(self) -> None:
        while True:
            with self._kick:
                while self._kick_pending is None and not self._stopping.is_set():
                    self._kick.wait()
                if self._stopping.is_set():
                    return
                scope, self._kick_pending = self._kick_pending, None
            if scope == "all":
                self._observe_everything()
            else:
                self._observe_links()

    def _observe_links(self) -> None:
        platform = self._platform
        self._safely("wan", lambda: observers.observe_wan(platform, self._recorder))
        self._safely("tunnel", lambda: observers.observe_tunnel(platform, self._recorder))
        # IPv4 judged down while the WAN was without its address (a renumbering, a PPPoE
        # redial) holds every action until it is judged up again: with the WAN back, probe
        # now rather than at the next interval (60 s by default).
        state = self._recorder.state
        wan = state.wan
        if (
            "ipv4" in self._config.probes
            and state.probe("ipv4").status == "down"
            and wan is not None
            and wan.exists
            and wan.link_up
            and wan.address is not None
        ):
            self._observe_probe("ipv4")

    # -- the reconcile loop -----------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        self._observe_everything()  # here, not on the main thread: a stop is never delayed
        while not self._stopping.is_set():
            seen = self._recorder.last_seq
            timeout: float | None = _MAX_IDLE_WAIT
            try:
                with self._work:
                    self._follow_failover()
                    result = reconcile_once(
                        self._config,
                        self._recorder,
                        self._executor,
                        self._clock,
                        netns=self._netns,
                        should_stop=self._stopping.is_set,
                    )
                self._log_held(result.held)
                due = _earliest(
                    earliest_due(result.held),
                    failover_due(self._loaded, self._recorder.state, self._clock()),
                )
                if due is not None:
                    timeout = min(_MAX_IDLE_WAIT, max(0.05, due - self._clock()))
            except RecorderClosedError:
                return  # abandoned at the stop: its outcome cannot be recorded any more
            except Exception:
                _log.exception("reconcile pass failed; trying again in %g s", _ERROR_PAUSE)
                self._stopping.wait(_ERROR_PAUSE)
                continue
            self._recorder.wait_for_news(seen, timeout)

    def _follow_failover(self) -> None:
        """Several WANs: record the policy's choice when one is due and, when the active WAN
        changed, run on it: a platform, HE client, observers and watch made for it (as a
        reload makes them; kept as they are if that fails), and its WAN and the tunnel
        observed before the plan, which then moves HE, the tunnel and pf to it."""
        wanted = follow_failover(self._loaded, self._recorder, self._clock())
        if wanted.wan.interface == self._config.wan.interface:
            return
        built = self._build(wanted)
        if built is None:
            return  # logged; the next pass tries again
        platform, client, jobs, watch = built
        old_watch, old_client, old_platform = self._watch, self._client, self._platform
        self._config, self._platform, self._client = wanted, platform, client
        self._executor = Executor(platform, client, self._recorder)
        self._install_jobs(jobs)
        self._watch = watch
        _discard(old_watch, old_client, old_platform)
        _log.info("now on WAN %s", wanted.wan.interface)
        self._safely("wan", lambda: observers.observe_wan(platform, self._recorder))
        self._safely("tunnel", lambda: observers.observe_tunnel(platform, self._recorder))

    def _log_held(self, held: tuple[Held, ...]) -> None:
        # The same holds come back on every pass: log them when they change, not each time.
        summary = tuple((item.action.key, item.until) for item in held)
        if summary == self._last_held:
            return
        self._last_held = summary
        for item in held:
            when = (
                f" until {datetime.fromtimestamp(item.until, UTC):%Y-%m-%d %H:%M:%S}Z"
                if item.until is not None
                else ""
            )
            _log.info("held %s%s (%s): %s", item.action.key, when, item.why, item.detail)

    # -- notifications and metrics -----------------------------------------------------------

    def _on_fact(self, before: ObservedState, envelope: Envelope, after: ObservedState) -> None:
        """Under the recorder's lock: count the fact, queue its notifications (never wait)."""
        with self._telemetry_lock:
            notices = self._telemetry.observe(before, envelope, after)
        for notice in notices:
            _log.info("notice %s (#%d): %s", notice.event, notice.seq, notice.message)
            self._hooks.submit(notice)
        self._publisher.changed()

    def _reading(self) -> Reading:
        """What the metrics show now (the textfile writer and each /metrics scrape)."""
        config = self._config
        state, last_seq = self._recorder.view()
        with self._telemetry_lock:
            telemetry = self._telemetry.copy()
        now = self._clock()
        return Reading(
            telemetry=telemetry,
            state=state,
            held=plan(desired(config, state), state, now).held,
            log_seq=last_seq,
            log_bytes=log_bytes(events_dir(config.daemon.state_dir)),
            now=now,
            dropped_unrecorded=self._hooks.dropped,
        )

    # -- clock steps ------------------------------------------------------------------------

    def _clock_watch(self) -> None:
        """APScheduler keeps its next run times in wall-clock time: after the clock steps
        back by two hours it would run no observer for two hours (kernel notices go on, but
        no probe). Seen from the monotonic clock, the step is plain: reschedule the observers
        from the new time and observe everything at once."""
        offset = self._wall() - time.monotonic()
        while not self._stopping.wait(_CLOCK_WATCH):
            now = self._wall() - time.monotonic()
            step, offset = now - offset, now
            if step > -_CLOCK_STEP:
                continue  # forward steps: APScheduler runs what is due once (coalescing)
            _log.warning(
                "the system clock stepped back %.0f s: observers rescheduled from now, "
                "everything observed afresh",
                -step,
            )
            if not self._acquire_work_unless_stopping():
                return
            try:
                self._install_jobs(_observer_jobs(self, self._config))
            finally:
                self._work.release()
            self._kick_observation("all")

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _metrics_interval(config: Config) -> float:
    """The textfile is rewritten at least this often: the shortest probe interval."""
    return min((p.interval for p in config.probes.values()), default=60.0)


@frozen
class _Job:
    """One periodic observer: its id, its trigger (already checked), what it runs."""

    job_id: str
    trigger: IntervalTrigger
    func: Callable[[], None]


def _observer_jobs(daemon: Daemon, config: Config) -> list[_Job]:
    """The periodic observers `config` asks for. Each trigger is built and asked for its
    next fire time here, so a value that would overflow a timer fails now, before a reload
    switches anything, and not inside the scheduler."""
    jobs: list[_Job] = []
    now = datetime.now(UTC)

    def every(seconds: float, job_id: str, func: Callable[[], None]) -> None:
        trigger = IntervalTrigger(seconds=seconds, jitter=min(seconds * 0.1, 5.0), timezone=UTC)
        if trigger.get_next_fire_time(None, now) is None:
            raise ValueError(f"observer {job_id}: an interval of {seconds:g} s never fires")
        jobs.append(_Job(job_id, trigger, func))

    every(
        config.tunnel.observe_interval,
        "wan",
        lambda: daemon._safely(
            "wan", lambda: observers.observe_wan(daemon._platform, daemon._recorder)
        ),
    )
    every(
        config.tunnel.observe_interval,
        "tunnel",
        lambda: daemon._observe_tunnel_side(daemon._config, daemon._platform),
    )
    for family, probe in sorted(config.probes.items()):
        every(probe.interval, f"probe:{family}", functools.partial(daemon._observe_probe, family))
    if config.failover is not None:
        interval = config.probes["ipv4"].interval
        for wan in config.failover.wans:
            job = functools.partial(daemon._observe_wan_probe, wan.interface)
            every(interval, f"wan-probe:{wan.interface}", job)
    if config.tunnelbroker.info_url is not None:
        # HE's tunnelInfo is a courtesy, not a monitor: ask no more often than we update.
        interval = max(config.tunnel.observe_interval, config.tunnelbroker.min_update_interval)
        every(interval, "he", daemon._observe_endpoint)
    return jobs


def _discard(watch: Watch | None, client: object, platform: object) -> None:
    """Stop a watch and close a client and a platform that are no longer (or never were) in
    use; failures are only logged."""
    if watch is not None:
        try:
            watch.stop()
        except Exception as exc:
            _log.warning("stopping the kernel watch failed: %s", error_line(exc))
    _close_quietly(client)
    _close_quietly(platform)


def _close_quietly(resource: object) -> None:
    """Close a platform or HE client if it has a close(); a failing close is only logged
    (the daemon is reloading or stopping and has nothing better to do with it)."""
    close = getattr(resource, "close", None)
    if not callable(close):
        return
    try:
        close()
    except Exception as exc:
        _log.warning("closing %s failed: %s", type(resource).__name__, error_line(exc))


def _default_client(config: Config) -> Any:
    return observers.make_client(config)


def _default_loader(path: Any) -> Config:
    from reconciler.configfile import load_config

    return load_config(path)
