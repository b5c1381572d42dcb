"""Benchmark: N fuzzed update payloads through the wire decoder and RoundInbox (issue 10).

Runs simulator.payload_fuzz (the mutations and properties the tests run with Hypothesis) from a seeded
numpy Generator, split over worker processes, and prints the payloads, crashes (anything but
PayloadRejected escaping the decoder, anything escaping the inbox), invalid updates accepted, the
verdicts and rejection reasons, and the time taken; exit code 1 if any property failed.
    python scripts/fuzz_round_inbox.py [N] [--seed S] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from simulator.payload_fuzz import FuzzStats, fuzz


def run(count: int, seed: int, workers: int) -> FuzzStats:
    """`count` payloads over `workers` processes, worker i drawing from the i-th child of SeedSequence(seed)."""
    shares = [count // workers + (i < count % workers) for i in range(workers)]
    children = np.random.SeedSequence(seed).spawn(workers)
    total = FuzzStats()
    if workers == 1:
        total.merge(fuzz(count, children[0]))
        return total
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(fuzz, shares, children):
            total.merge(part)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payloads", nargs="?", type=int, default=100_000, help="how many payloads (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes (default: 2, or 1 on a single core)")
    args = parser.parse_args(argv)
    if args.payloads < 1 or args.workers < 1:
        parser.error("payloads and workers must be at least 1")
    start = time.monotonic()
    stats = run(args.payloads, args.seed, args.workers)
    seconds = time.monotonic() - start
    v = stats.verdicts
    print(f"payloads          {stats.payloads:,}  (seed {args.seed}, {args.workers} workers)")
    print(f"crashes           {v['crash']:,}")
    print(f"invalid accepted  {v['invalid']:,}")
    print(f"valid accepted    {v['accepted']:,}  (idempotent resends {v['resend']:,})")
    print(f"rejected          {v['rejected']:,}")
    for reason, n in stats.reasons.most_common():
        print(f"  {reason:22s}{n:9,d}")
    print("mutations         " + ", ".join(f"{name} {n:,}" for name, n in stats.mutations.most_common()))
    print(f"seconds           {seconds:.1f}  ({stats.payloads / seconds:,.0f} payloads/s)")
    for payload, outcome in stats.violations:
        print(f"VIOLATION {outcome.verdict}: seed {payload.seed.name}, mutations {payload.mutations}, topic device "
              f"{payload.topic_device[:40]!r}, round {payload.topic_round}: {outcome.note}")
    return 1 if v["crash"] or v["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
