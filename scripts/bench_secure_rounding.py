"""Benchmark: the exact grid rounding of `SecureNoise` and the central-mode admission it sits in (issue 11).

Prints the median ms per 4,810-value `randomized_round` (the vectorised exact rounding, and the per-coordinate
exact Bernoulli it replaced, for comparison), then the median ms to admit one 4,810-parameter update through a
RoundInbox whose sink folds it into the round's PartialSum, in `central` mode (grid rounding over OS entropy)
and in `none` mode.
    python scripts/bench_secure_rounding.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from cloud.aggregation_settings import DpMode, FedAvgConfig
from cloud.declared_settings import DeclaredSettings
from cloud.partial_sum import PartialSum
from cloud.round_inbox import RoundInbox
from edge.discrete_gaussian import RandomSource, bernoulli, secure_source
from edge.noise_source import SecureNoise
from edge.privacy import DiscreteGaussianMechanism
from edge.wire import UpdateMeta, encode_update

DIMENSION = 4810
TEMPLATE = {"dense_0/kernel": (37, 130)}  # 4,810 parameters, the student's size
FLEET, ROUND, VERSION, CLIP = "bench", 1, 0, 1.0


def per_coordinate_round(x: np.ndarray, source: RandomSource) -> np.ndarray:
    """The rounding `SecureNoise` used before: one exact Python Bernoulli per coordinate (the baseline)."""
    flat = np.asarray(x, np.float64).ravel()
    low = np.floor(flat)
    up = [bernoulli(Fraction(float(f)), source) for f in flat - low]
    return (low.astype(np.int64) + np.array(up, dtype=np.int64)).reshape(np.shape(x))


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run` in ms over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def admission_ms(mode: DpMode, repeats: int) -> float:
    """Median ms to admit one update (decode, checks, and folding it into the round's sum)."""
    config = FedAvgConfig(dp_mode=mode, clip=CLIP, noise_multiplier=1.0 if mode is DpMode.CENTRAL else 0.0)
    devices = [f"d{i}" for i in range(repeats + 1)]
    declared = {d: DeclaredSettings(mode.value, CLIP, 0.0) for d in devices}
    rng = np.random.default_rng(0)
    blobs = []
    for device in devices:
        delta = rng.standard_normal(TEMPLATE["dense_0/kernel"]).astype(np.float32)
        delta *= np.float32(0.5 / np.linalg.norm(delta))
        meta = UpdateMeta(fleet=FLEET, device=device, round=ROUND, base_version=VERSION, num_examples=40,
                          clip=CLIP, noise_multiplier=0.0, dp_mode=mode.value)
        blobs.append((device, encode_update({"dense_0/kernel": delta}, meta)))
    partial = PartialSum.empty(TEMPLATE, config)
    secure = SecureNoise()
    inbox = RoundInbox(ROUND, VERSION, FLEET, frozenset(devices), dict(TEMPLATE), mode, CLIP, declared=declared,
                       dimension=DIMENSION, sink=lambda update: partial.add(update, secure))
    pending = iter(blobs)

    def admit_next() -> None:
        device, blob = next(pending)
        if inbox.offer(device, ROUND, blob) is None:
            raise RuntimeError(f"the bench's update from {device} was rejected: {inbox.rejected.last}")

    return median_ms(admit_next, repeats)


def main(repeats: int) -> None:
    mechanism = DiscreteGaussianMechanism(CLIP, 1.0, DIMENSION)
    delta = np.random.default_rng(1).standard_normal(DIMENSION)
    on_grid_scale = delta * (0.5 / np.linalg.norm(delta)) / mechanism.granularity
    secure, source = SecureNoise(), secure_source()
    print(f"randomized_round of {DIMENSION} values, median of {repeats} (ms):")
    print(f"  vectorised exact (SecureNoise): {median_ms(lambda: secure.randomized_round(on_grid_scale), repeats):.3f}")
    print(f"  per-coordinate exact Bernoulli:  "
          f"{median_ms(lambda: per_coordinate_round(on_grid_scale, source), repeats):.3f}")
    print(f"admission of one {DIMENSION}-parameter update into the round's sum, median of {repeats} (ms):")
    for mode in (DpMode.CENTRAL, DpMode.NONE):
        print(f"  {mode.value}: {admission_ms(mode, repeats):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
