"""One reconcile pass: plan on the folded state, run the actions in order, observe their effect.

`reconciler apply` runs one pass and exits; the daemon (reconciler.daemon) runs one after
every new fact. Neither the scheduler nor any thread lives here, so `apply` imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from attrs import field, frozen

from reconciler.errors import error_line
from reconciler.model.actions import Action, Outcome, RestartTunnel, RestartWan, RewriteHostname
from reconciler.model.config import Config
from reconciler.model.desired import desired
from reconciler.model.facts import ConfigLoaded, DaemonStopped
from reconciler.model.failover import (
    active_interface,
    decide,
    next_due,
    policy_of,
    with_active_wan,
)
from reconciler.model.plan import Held, plan
from reconciler.model.state import ObservedState
from reconciler.recorder import Recorder, RecorderClosedError
from reconciler.world import observers
from reconciler.world.executors import Executor
from reconciler.world.platform import Platform

__all__ = [
    "PassResult",
    "active_config",
    "config_loaded_fact",
    "daemon_stopped_fact",
    "earliest_due",
    "failover_due",
    "follow_failover",
    "observe_after",
    "reconcile_once",
]

_log = logging.getLogger(__name__)


@frozen
class PassResult:
    """One reconcile pass: what ran with what outcome, and what the plan held back."""

    done: tuple[tuple[Action, Outcome], ...] = ()
    held: tuple[Held, ...] = field(default=(), eq=False)

    @property
    def failed(self) -> bool:
        return any(not outcome.succeeded for _, outcome in self.done)


def config_loaded_fact(config: Config) -> ConfigLoaded:
    """The ConfigLoaded fact for `config`: digest, summary and probe thresholds, no secret."""
    return ConfigLoaded(
        digest=config.digest,
        path=str(config.path),
        summary=config.summary(),
        fail_after={family: p.fail_after for family, p in config.probes.items()},
        recover_after={family: p.recover_after for family, p in config.probes.items()},
    )


def active_config(config: Config, state: ObservedState) -> Config:
    """`config` with the WAN the log says is active (several WANs); `config` with one."""
    policy = policy_of(config)
    if policy is None:
        return config
    return with_active_wan(config, active_interface(policy, state.failover))


def follow_failover(config: Config, recorder: Recorder, now: float) -> Config:
    """Record the failover policy's choice, when one is due, and return `config` with the
    active WAN (several WANs; `config` itself with one). The switch is a fact like any
    other; the plan on the returned config then moves HE, the tunnel and pf to it."""
    policy = policy_of(config)
    if policy is None:
        return config
    choice = decide(policy, recorder.state.failover, now)
    if choice is not None:
        _log.warning(
            "wan %s: %s -> %s: %s", choice.kind, choice.previous, choice.interface, choice.reason
        )
        recorder.record(choice.fact(), "failover")
    return active_config(config, recorder.state)


def failover_due(config: Config, state: ObservedState, now: float) -> float | None:
    """When the failover policy must be asked again though no fact came (several WANs)."""
    policy = policy_of(config)
    return None if policy is None else next_due(policy, state.failover, now)


def observe_after(
    action: Action, config: Config, platform: Platform, recorder: Recorder, netns: str | None
) -> None:
    """Observe what `action` touched, so the next plan sees its effect at once."""
    match action:
        case RestartWan():
            observers.observe_wan(platform, recorder)
            observers.observe_tunnel(platform, recorder)
        case RewriteHostname():
            observers.observe_hostname_file(config, platform, recorder)
        case RestartTunnel():
            observers.observe_tunnel(platform, recorder)
            # Probe IPv6 right away: the repair is only known to work once a ping crosses.
            observers.observe_probe(config, "ipv6", recorder, netns=netns)
        case _:
            pass  # update-he-endpoint records HE's answer itself; reload-pf leaves no trace


def reconcile_once(
    config: Config,
    recorder: Recorder,
    executor: Executor,
    clock: Callable[[], float],
    *,
    netns: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassResult:
    """Plan on the folded state and run the actions in order, stopping at the first failure;
    after each action observe what it touched."""
    state = recorder.state
    current = plan(desired(config, state), state, clock())
    done: list[tuple[Action, Outcome]] = []
    if current.actions:
        _log.info("plan: %s", ", ".join(action.key for action in current.actions))
    for action in current.actions:
        if should_stop():
            break
        outcome = executor.execute(action)
        done.append((action, outcome))
        try:
            observe_after(action, config, executor.platform, recorder, netns)
        except RecorderClosedError:
            raise
        except Exception as exc:  # the next scheduled observation will try again
            _log.warning("observing after %s failed: %s", action.key, error_line(exc))
        if not outcome.succeeded:
            break
    return PassResult(tuple(done), tuple(current.held))


def daemon_stopped_fact(reason: str, state: ObservedState, since_seq: int) -> DaemonStopped:
    """DaemonStopped for a stop for `reason`; it names every action started after
    `since_seq` that has no outcome in `state` (abandoned when its grace period ran out)."""
    unfinished = sorted(
        record.key
        for record in state.actions.values()
        if record.in_flight and record.last_started_seq > since_seq
    )
    if not unfinished:
        return DaemonStopped(reason=reason)
    verb = "was" if len(unfinished) == 1 else "were"
    return DaemonStopped(
        reason=f"{reason}: stopped while {', '.join(unfinished)} {verb} running; "
        f"its outcome is unknown"
    )


def earliest_due(held: tuple[Held, ...]) -> float | None:
    """The earliest time (epoch seconds) at which a held action becomes due, if any."""
    known = [item.until for item in held if item.until is not None]
    return min(known) if known else None
