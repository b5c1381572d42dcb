"""`python -m simulator noise-study`: discrete vs float Gaussian, and Poisson sampling vs first-K, over seeds."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from edge.cli import EXIT_OK, float_between, positive_float, positive_int, usage


def add_parser(sub: argparse._SubParsersAction, seed_list: Callable[[str], list[int]],
               add_training_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the `noise-study` verb (seed_list, add_training_flags: the simulator CLI's shared helpers)."""
    p = sub.add_parser("noise-study", help="central DP: discrete vs float Gaussian, and real sampling vs first-K, "
                                           "over seeds (in-process, seeded noise)", description=__doc__)
    p.add_argument("--seeds", type=seed_list, default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--devices", type=positive_int, default=100, help="virtual devices of the fleet")
    p.add_argument("--sampling-rate", type=float_between(1e-6, 1.0), default=0.3,
                   help="q of the sampled variant (Poisson cohorts, amplification credited)")
    p.add_argument("--rounds", type=positive_int, default=10, help="federated rounds")
    p.add_argument("--target-epsilon", type=positive_float, default=8.0, help="epsilon every variant is run at")
    p.add_argument("--samples-per-device", type=positive_int, default=32,
                   help="samples each virtual device draws from the device pool")
    p.add_argument("--out", type=Path, default=Path("runs/noise-study"), help="directory for the report")
    add_training_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run every variant on every seed; print the table; write the report."""
    from simulator.config import ExperimentConfig
    from simulator.noise_study import run_noise_study

    try:
        from simulator.__main__ import training_from

        config = ExperimentConfig(rounds=args.rounds, training=training_from(args))
    except ValueError as exc:
        return usage(str(exc))
    run_noise_study(config, args.seeds, args.devices, args.sampling_rate, args.target_epsilon,
                    args.samples_per_device, args.out)
    print((args.out / "noise_study.md").read_text())
    print(f"wrote {args.out}/noise_study.md, noise_study.json, noise_study.png")
    return EXIT_OK
