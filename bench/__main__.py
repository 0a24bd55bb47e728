"""`python -m bench [NAME ...]`: run the named benchmarks (all by default) and print figures."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "eventlog": "bench.eventlog",  # appends, group commits, reads, replay, start-up
    "lab": "bench.lab",  # time to repair, polling vs notifications, soak (root)
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHES)}")
        return 1
    status = 0
    for name in names:
        status |= importlib.import_module(BENCHES[name]).main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
