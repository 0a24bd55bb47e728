"""The network lab: real kernel interfaces in network namespaces on one machine.

`Lab` builds a `router` namespace (where the daemon runs) and a `he` namespace playing
Hurricane Electric (the tunnel's far end and a fake update server), joined by a veth
"internet" whose router-side address the lab changes as an ISP would. Needs root.
"""

from __future__ import annotations

from reconciler.lab.topology import Lab, LabError, lab_unavailable_reason

__all__ = ["Lab", "LabError", "lab_unavailable_reason"]
