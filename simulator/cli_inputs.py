"""The file arguments of `python -m simulator`, checked before any verb trains a model: the data set a run
reads (--data) exists and is not asked for beside --task, and the directory it writes (--out, or run's
--run-dir) is one it can create."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.cli import broker_address, fail, output_path_problem, usage

DATA_FORMATS = "MNIST IDX files, a Keras-style .npz, CIFAR-10 batches, Tiny-ImageNet, an image folder or meter CSV"


def check_inputs(args: argparse.Namespace) -> int | None:
    """None when the verb's --data and output directory can be used; else the exit code, the error printed
    (2 for --data beside a --task, 1 for a path that is missing or of the wrong kind)."""
    data: Path | None = getattr(args, "data", None)
    if data is not None and getattr(args, "task", "digits") != "digits":
        return usage("pass --task or --data, not both")
    if data is not None and not data.exists():
        return fail(f"--data {data}: no such file or directory; pass a data set you have ({DATA_FORMATS}), or "
                    f"drop --data to use the bundled --task")
    flag, out = ("--run-dir", args.run_dir) if args.verb == "run" else ("--out", getattr(args, "out", None))
    problem = None if out is None else output_path_problem(out, flag, directory=True)
    return None if problem is None else fail(problem)


BROKER_KINDS = ("auto", "mosquitto", "amqtt")


def simulator_broker(text: str) -> str:
    """argparse type of `simulator run --broker`: a broker to start (auto, mosquitto, amqtt) or host:port."""
    if text.strip().lower() in BROKER_KINDS:
        return text.strip().lower()
    try:
        return broker_address(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or name a broker to start: {', '.join(BROKER_KINDS)}") from None
