"""`python -m simulator bits-study`: accuracy against update bits (32, 8, 4, 2) over seeds, bytes against the limit."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge.cli import EXIT_OK, positive_int, usage


def add_parser(sub: argparse._SubParsersAction, seed_list: Callable[[str], list[int]],
               add_data_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the `bits-study` verb (seed_list, add_data_flags: the simulator CLI's shared helpers)."""
    p = sub.add_parser("bits-study", help="accuracy against update bits 32, 8, 4, 2 over seeds, and each width's "
                                          "bytes on the wire against params x bits (in-process)",
                       description=__doc__)
    p.add_argument("--seeds", type=seed_list, default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--devices", type=positive_int, default=10, help="devices of the fleet")
    p.add_argument("--rounds", type=positive_int, default=30, help="federated rounds")
    p.add_argument("--out", type=Path, default=Path("runs/bits-study"), help="directory for the report")
    add_data_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Federate every seed at every width; print the table; write the report."""
    from simulator.__main__ import data_config
    from simulator.bits_study import run_bits_study
    from simulator.config import ExperimentConfig

    try:
        base = ExperimentConfig(devices=args.devices, rounds=args.rounds, **data_config(args))
    except ValueError as exc:
        return usage(str(exc))
    report = run_bits_study([replace(base, seed=s) for s in args.seeds], args.out)
    from simulator.bits_study import markdown

    print(markdown(report))
    print(f"wrote {args.out}/bits-study.md, bits-study.json, bits-study.png")
    return EXIT_OK
