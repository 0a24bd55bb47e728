"""`python -m bench [NAME ...]`: run the named benchmarks (all by default) and print figures."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "chaos": "bench.chaos",  # seeded random faults in the lab, checked against invariants (root)
    "eventlog": "bench.eventlog",  # appends, group commits, reads, replay, start-up
    "he": "bench.he",  # one HE update against answers dripped byte by byte
    "history": "bench.history",  # windows into 90 quiet days, and into a busy log
    "lab": "bench.lab",  # time to repair, polling vs notifications, soak (root)
    "report": "bench.report",  # reconciler report over a week of log
}


def main(argv: list[str]) -> int:
    # `python -m bench lab --soak 600`: names first, then options for the benchmark(s).
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    argv, options = argv[:first_option], argv[first_option:]
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHES)}")
        return 1
    status = 0
    for name in names:
        module = importlib.import_module(BENCHES[name])
        status |= module.main(options) if options else module.main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
