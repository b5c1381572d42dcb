"""Greedy against exact shard planning: objective gap over random fleets, and time for 10,000 devices.

    python -m cloud.bench_planner [--fleets 1000] [--seed 0] [--devices 10000]

Every random fleet (seeded numpy Generator) draws its own teacher and devices:
- a teacher of L = 3..8 exits: FLOPs per sample from 10-100 kFLOP growing 20-300x to the last
  exit, int8 bytes from 2-20 KB growing 10-100x, arena from 2-10 KB growing 1.5-8x, held-out
  accuracy saturating from 0.5-0.8 towards 0.9-0.99 with noise (so a deeper exit is sometimes
  less accurate, as in real multi-exit teachers); in 30% of teachers the exits from some depth
  on use BATCH_MATMUL, which the Edge TPU lacks;
- 20..500 devices: target linux 20%, edgetpu 20%, mcu 60%; per-sample FLOP budget log-uniform
  from the cheapest exit to 1.5x the deepest; 20..500 samples; mcu arena and flash log-uniform
  over the teacher's range; link 10-250 kbit/s for mcu (NB-IoT to LTE-M), 1-100 Mbit/s otherwise.
Gap = (exact - greedy) / |exact| of the fleet's total objective sum_i acc(S_i) - lambda Comm_i(S_i),
in percent, for several lambda (accuracy per second of one-off shard download) and for a cap of
2 distinct shards; also the gap per device in objective units (accuracy points when lambda = 0).
The 10,000-device timing uses one such fleet per exit count, median of 5 runs after a warm-up. Figures only:
nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from cloud.planner import DeviceProfile, ShardCandidate, plan_shards, plan_shards_greedy, total_objective
from edge.cli import CliParser, positive_int, seed_int

BASE_OPS = frozenset({"CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"})
TARGET_P = {"linux": 0.2, "edgetpu": 0.2, "mcu": 0.6}


def random_teacher(rng: np.random.Generator, exits: int | None = None) -> list[ShardCandidate]:
    """Candidate shards of a random multi-exit teacher (see the module docstring)."""
    n = int(exits or rng.integers(3, 9))
    flops = 10 ** rng.uniform(4, 5) * _growth(rng, n, 20, 300)
    size = 10 ** rng.uniform(3.3, 4.3) * _growth(rng, n, 10, 100)
    arena = 10 ** rng.uniform(3.3, 4) * _growth(rng, n, 1.5, 8)
    lo, hi, rate = rng.uniform(0.5, 0.8), rng.uniform(0.9, 0.99), rng.uniform(0.5, 2)
    acc = np.clip(hi - (hi - lo) * np.exp(-rate * np.arange(n)) + rng.normal(0, 0.01, n), 0.05, 1.0)
    matmul_from = int(rng.integers(1, n)) if rng.random() < 0.3 else n
    return [ShardCandidate(f"p{k + 1}", k + 1, int(flops[k]), int(size[k]), int(arena[k]), float(acc[k]),
                           BASE_OPS | ({"BATCH_MATMUL"} if k >= matmul_from else set())) for k in range(n)]


def _growth(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """n increasing factors from 1 to a last/first ratio drawn log-uniformly in [lo, hi], unevenly spaced."""
    steps = rng.dirichlet(np.ones(n - 1)) * rng.uniform(np.log(lo), np.log(hi))
    return np.exp(np.r_[0.0, np.cumsum(steps)])


def random_fleet(rng: np.random.Generator, shards: list[ShardCandidate], n: int | None = None) -> list[DeviceProfile]:
    """Devices every one of which the cheapest shard fits (see the module docstring)."""
    n = int(n or rng.integers(20, 501))
    f_lo, f_hi = shards[0].flops_per_sample, shards[-1].flops_per_sample * 1.5
    a_lo, a_hi = shards[0].arena_bytes, max(s.arena_bytes for s in shards) * 1.5
    b_lo, b_hi = shards[0].model_bytes, max(s.model_bytes for s in shards) * 1.5
    targets = rng.choice(list(TARGET_P), size=n, p=list(TARGET_P.values()))
    samples = rng.integers(20, 501, size=n)
    per_sample = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), n))
    arena = np.exp(rng.uniform(np.log(a_lo), np.log(a_hi), n))
    flash = np.exp(rng.uniform(np.log(b_lo), np.log(b_hi), n))
    link_lo = np.where(targets == "mcu", 10.0, 1_000.0)  # NB-IoT .. LTE-M for meters, 1-100 Mbit/s otherwise
    link_hi = np.where(targets == "mcu", 250.0, 100_000.0)
    link = np.exp(rng.uniform(np.log(link_lo), np.log(link_hi)))
    out = []
    for i in range(n):
        mcu = targets[i] == "mcu"
        out.append(DeviceProfile(f"d{i:05d}", float(per_sample[i] * samples[i]), int(samples[i]),
                                 int(arena[i]) if mcu else None, int(flash[i]) if mcu else None, str(targets[i]),
                                 uplink_kbps=float(link[i])))
    return out


def gaps(fleets: int, seed: int, lam: float, max_shards: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy's objective gap to exact over `fleets` random fleets: in percent, and per device."""
    rng = np.random.default_rng(seed)
    pct, per_device = np.empty(fleets), np.empty(fleets)
    for f in range(fleets):
        shards = random_teacher(rng)
        devices = random_fleet(rng, shards)
        exact = total_objective(plan_shards(devices, shards, lam, max_shards))
        greedy = total_objective(plan_shards_greedy(devices, shards, lam, max_shards))
        pct[f] = 100.0 * (exact - greedy) / abs(exact)
        per_device[f] = (exact - greedy) / len(devices)
    return pct, per_device


def timing(devices: int, exits: int, seed: int, lam: float, max_shards: int | None,
           repeats: int = 5) -> tuple[float, float]:
    """Median seconds of exact and greedy planning for one random fleet of `devices` devices."""
    rng = np.random.default_rng(seed)
    shards = random_teacher(rng, exits)
    fleet = random_fleet(rng, shards, devices)
    out = []
    for solve in (plan_shards, plan_shards_greedy):
        solve(fleet, shards, lam, max_shards)  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            solve(fleet, shards, lam, max_shards)
            runs.append(time.perf_counter() - t0)
        out.append(statistics.median(runs))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m cloud.bench_planner", description=__doc__.split("\n\n")[0])
    p.add_argument("--fleets", type=positive_int, default=1000, help="random fleets per setting")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random fleets and teachers")
    p.add_argument("--devices", type=positive_int, default=10_000, help="fleet size for the timing")
    args = p.parse_args(argv)
    if args.fleets < 1 or args.devices < 1:
        p.error("--fleets and --devices must be at least 1")

    print(f"greedy vs exact over {args.fleets} random fleets (seed {args.seed}); gap = (exact - greedy) / exact")
    print(f"  {'setting':<26}{'mean gap':>10}{'worst gap':>11}{'per device: mean':>18}{'worst':>8}"
          f"{'greedy = exact':>16}")
    for lam, cap in ((0.0, None), (0.001, None), (0.01, None), (0.05, None), (0.0, 2), (0.05, 2)):
        g, d = gaps(args.fleets, args.seed, lam, cap)
        name = f"lambda {lam:g}" + (f", max {cap} shards" if cap else "")
        print(f"  {name:<26}{g.mean():>9.3f}%{g.max():>10.3f}%{d.mean():>18.4f}{d.max():>8.4f}"
              f"{np.mean(g < 1e-9):>15.1%}")
    print(f"\nplanning time for {args.devices:,} devices (median of 5; includes building the device/shard tables)")
    print(f"  {'teacher exits':<16}{'setting':<22}{'exact':>10}{'greedy':>10}")
    for exits in (4, 8):
        for cap in (None, 2):
            exact_s, greedy_s = timing(args.devices, exits, args.seed, 0.05, cap)
            name = "lambda 0.05" + (f", max {cap}" if cap else "")
            print(f"  {exits:<16}{name:<22}{exact_s * 1e3:>8.1f} ms{greedy_s * 1e3:>7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
