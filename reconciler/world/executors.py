"""Executors: run one planned action against the world and record what came of it.

The intent (ActionStarted) is recorded durably before anything is touched, so a crash in the
middle is visible after a restart. Every failure becomes an Outcome and an ActionFailed fact;
nothing raises into the reconcile loop. Actions are idempotent: running one whose effect is
already present succeeds and changes nothing (the platforms and HE's `nochg` see to that).
A failure's message may quote outside text (a command's stderr, HE's body): it is cleaned
(outside_text.clean_line) here, where it enters the fact.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, Protocol

from reconciler.errors import (
    ActionError,
    PermanentError,
    PlatformUnsupportedError,
    error_line,
)
from reconciler.model.actions import (
    Action,
    Outcome,
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
)
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    EndpointObserved,
)
from reconciler.outside_text import clean_line

if TYPE_CHECKING:
    from reconciler.world.observers import FactSink
    from reconciler.world.platform import Platform

__all__ = ["Executor", "UpdateClient"]

_log = logging.getLogger(__name__)

# A message in a fact and a log line: long enough for a reason, short enough to read.
_MESSAGE_LIMIT = 300

FailureKind = Literal["temporary", "permanent"]


class _UpdateResult(Protocol):
    @property
    def outcome(self) -> Outcome: ...

    @property
    def endpoint(self) -> str | None: ...


class UpdateClient(Protocol):
    """What the executor needs of reconciler.world.tunnelbroker.TunnelbrokerClient."""

    def update(self, address: str | None, expected: str | None) -> _UpdateResult: ...


class Executor:
    """Runs actions through the platform and the HE client; records every outcome."""

    def __init__(self, platform: Platform, client: UpdateClient, recorder: FactSink) -> None:
        self.platform = platform
        self.client = client
        self.recorder = recorder

    def execute(self, action: Action) -> Outcome:
        """Record the intent, act, record and return the outcome. Never raises for a failure
        of the action itself (only if the event log cannot be written)."""
        source = f"executor:{action.KIND}"
        self.recorder.record(
            ActionStarted(
                key=action.key, action=action.KIND, reason=action.reason, causes=action.causes
            ),
            source,
        )
        _log.info("doing %s: %s", action.key, action.reason or "planned")
        endpoint: str | None = None
        try:
            outcome, endpoint = self._act(action)
        except ActionError as exc:
            if exc.temporary:
                outcome = Outcome.temporary(
                    clean_line(exc.message, _MESSAGE_LIMIT), exc.retry_after
                )
            else:
                outcome = Outcome.permanent(clean_line(exc.message, _MESSAGE_LIMIT))
        except PlatformUnsupportedError as exc:
            outcome = Outcome.permanent(clean_line(str(exc), _MESSAGE_LIMIT))
        except Exception as exc:  # an unexpected failure is worth another try later
            _log.debug("%s raised", action.key, exc_info=True)
            outcome = Outcome.temporary(clean_line(error_line(exc), _MESSAGE_LIMIT))
        message = clean_line(outcome.message, _MESSAGE_LIMIT)
        if outcome.succeeded:
            self.recorder.record(
                ActionSucceeded(
                    key=action.key, action=action.KIND, message=message, causes=action.causes
                ),
                source,
            )
            if isinstance(action, UpdateHeEndpoint):
                self.recorder.record(
                    EndpointObserved(address=endpoint, source="update", for_local=action.local),
                    source,
                )
            _log.info("done %s: %s", action.key, message or "ok")
        else:
            kind: FailureKind = "permanent" if outcome.status == "permanent" else "temporary"
            self.recorder.record(
                ActionFailed(
                    key=action.key,
                    action=action.KIND,
                    kind=kind,
                    message=message,
                    retry_after=outcome.retry_after,
                    causes=action.causes,
                    unconfirmed=outcome.unconfirmed,
                ),
                source,
            )
            retry = f" (retry after {outcome.retry_after:g} s)" if outcome.retry_after else ""
            _log.warning("failed %s (%s): %s%s", action.key, kind, message, retry)
        return Outcome(outcome.status, message, outcome.retry_after, outcome.unconfirmed)

    def _act(self, action: Action) -> tuple[Outcome, str | None]:
        match action:
            case RestartWan():
                self.platform.restart_wan()
                return Outcome.ok(f"restarted {action.interface}"), None
            case UpdateHeEndpoint(address=address):
                # Behind NAT no myip is sent and HE reports our public address, which we
                # cannot know: then there is no expected address to hold its answer to.
                result = self.client.update(address, address)
                return result.outcome, result.endpoint
            case RewriteHostname(path=path, content=content):
                if self.platform.write_hostname_file(content):
                    return Outcome.ok(f"wrote {path}"), None
                return Outcome.ok(f"{path} already up to date"), None
            case RestartTunnel(interface=interface, local=local, remote=remote):
                self.platform.restart_tunnel(local, remote)
                return Outcome.ok(f"{interface} up with {local} -> {remote}"), None
            case ReloadPf():
                self.platform.reload_firewall()
                return Outcome.ok("firewall reloaded"), None
        raise PermanentError(f"unknown action {action!r}")  # pragma: no cover - closed set
