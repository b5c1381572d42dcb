"""Benchmark: dp-scaling's virtual devices (simulator.dp_scaling.run_point) fitted here and on a local Ray cluster.

The same fleet, rounds and seed through both engines in one process: the local engine (every fit in this
process, one after the other) and --engine ray (simulator.ray_fit.RayFanOut: one actor per CPU, batches of
devices per task, updates aggregated in cohort order). Prints per engine: seconds per round, peak RSS of this
process and, for ray, the peak of the sum over every process of the cluster (sampled every 0.2 s), the final
accuracy, and whether the two engines' accuracies are equal (they must be: same seed, same order of sums).

    python scripts/bench_ray_fanout.py --devices 100000 --rounds 2 [--dp none|central|local] [--engines local,ray]
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Callable

import psutil

from cloud.strategy import DpMode
from edge.plan import TrainingSettings
from edge.student_runtime import TrainableStudent
from simulator.artifacts import prepare_cloud
from simulator.config import ExperimentConfig
from simulator.dp_scaling import DevicePool, run_point
from simulator.in_process import SEQUENTIAL, FanOut
from simulator.ray_cluster import RaySettings, ray_session

MB = 2**20


class PeakRss:
    """The peak, over samples every `period` s, of the summed RSS of this process and all its descendants."""

    def __init__(self, period: float = 0.2) -> None:
        self.period, self.peak, self.peak_self, self._stop = period, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self.peak_self = max(self.peak_self, me.memory_info().rss)
            self._stop.wait(self.period)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(run: Callable[[FanOut], float], fan_out: FanOut) -> tuple[float, float, PeakRss]:
    """(seconds, accuracy, peak RSS) of one run, shipping the clients to the actors included."""
    with PeakRss() as rss:
        started = time.monotonic()
        acc = run(fan_out)
        wall = time.monotonic() - started
    return wall, acc, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dp", choices=[m.value for m in DpMode], default="none")
    p.add_argument("--target-epsilon", type=float, default=8.0)
    p.add_argument("--samples-per-device", type=int, default=32)
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    training = TrainingSettings()
    art = prepare_cloud(ExperimentConfig(seed=args.seed, training=training), progress=lambda s: None)
    student = TrainableStudent.from_bytes(art.student_program)
    pool = DevicePool.from_artifacts(art, student.num_classes)
    mode = DpMode.parse(args.dp)

    def run(fan_out: FanOut) -> float:
        return run_point(art, mode, args.devices, args.rounds, args.target_epsilon, 1e-5, training,
                         args.samples_per_device, args.seed, student, pool, insecure_seeded_noise=True,
                         fan_out=fan_out).accuracy

    print(f"{args.devices:,} virtual devices x {args.rounds} rounds, DP {args.dp}, {args.samples_per_device} samples "
          f"per device, {psutil.cpu_count()} CPUs")
    results = {}
    for engine in args.engines.split(","):
        if engine == "local":
            wall, acc, peak = timed(run, SEQUENTIAL)
            cluster = ""
        else:
            from simulator.ray_fit import RayFanOut

            with ray_session(RaySettings()) as cpus:
                fan_out = RayFanOut(cpus)
                wall, acc, peak = timed(run, fan_out)
                fan_out.close()
                cluster = f" ({cpus} actors)"
        results[engine] = acc
        print(f"  {engine:5s}  {wall / args.rounds:8.1f} s/round  accuracy {acc:.4f}  peak RSS: this process "
              f"{peak.peak_self / MB:,.0f} MB, with all its descendants {peak.peak / MB:,.0f} MB{cluster}",
              flush=True)
    if len(set(results.values())) > 1:
        print(f"  ENGINES DIFFER: {results}")
    elif len(results) > 1:
        print("  same accuracy on every engine")


if __name__ == "__main__":
    main()
