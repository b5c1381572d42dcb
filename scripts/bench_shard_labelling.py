"""Benchmark: a device labelling its samples with its shard, one invoke for all rows against one per row.

    python -m simulator prepare --out /tmp/fleet          # any bundle: its shards are what devices run
    python scripts/bench_shard_labelling.py /tmp/fleet/bundle/shards [ROWS] [REPEATS]

For every shard, prints the milliseconds of edge.shard_runtime.ShardRunner.logits on ROWS random samples
(default 32, a pool-sampled device) in one batched invoke and row by row (the exported batch of one, as
before batching), their ratio, and whether the logits are equal; both measured in this one run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge.shard_runtime import ShardRunner


def mean_ms(runner: ShardRunner, x: np.ndarray, repeats: int) -> float:
    runner.logits(x)  # warm: the first call sizes the interpreter (and checks the batch once)
    started = time.perf_counter()
    for _ in range(repeats):
        runner.logits(x)
    return (time.perf_counter() - started) / repeats * 1e3


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    rows = int(argv[1]) if len(argv) > 1 else 32
    repeats = int(argv[2]) if len(argv) > 2 else 200
    print(f"{'shard':8s} {'batched ms':>11s} {'row by row ms':>14s} {'ratio':>6s}  equal")
    for path in sorted(Path(argv[0]).glob("*.tflite")):
        batched, single = ShardRunner.from_bytes(path.read_bytes()), ShardRunner.from_bytes(path.read_bytes())
        single._batches = False  # the row-by-row path the runner falls back to
        x = np.random.default_rng(0).random((rows, *batched.input_shape)).astype(np.float32)
        a, b = mean_ms(batched, x, repeats), mean_ms(single, x, repeats)
        equal = np.array_equal(batched.logits(x), single.logits(x))
        print(f"{path.stem:8s} {a:11.3f} {b:14.3f} {b / a:5.1f}x  {equal}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
