"""reconciler: keeps a router's Hurricane Electric IPv6 tunnel alive by itself."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
