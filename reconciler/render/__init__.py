"""Turning plans, states and timelines into text and versioned JSON for the CLI.

Rendering is pure: each function takes values (and `now`) and returns strings or
JSON-ready mappings; the commands print them.
"""

from __future__ import annotations

__all__: list[str] = []
