"""`python -m cloud aggregate`: serve a fleet bundle's rounds over a broker, checkpointing each round."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("aggregate", help="run the aggregator for a fleet bundle (python -m simulator prepare)")
    p.add_argument("--bundle", type=Path, required=True, help="directory written by `python -m simulator prepare`")
    p.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the MQTT broker")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoint"),
                   help="checkpoint directory; an existing checkpoint is resumed")
    p.add_argument("--holdout", type=Path, help=".npz with x, y to report the global student's accuracy per round")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cloud.serve import serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        history = serve(args.bundle, args.broker, args.checkpoint, args.holdout)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"{len(history)} rounds done; checkpoint in {args.checkpoint}")
    return 0
