"""`python -m cloud aggregate`: serve a fleet bundle's rounds over a broker, checkpointing each round."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.broker_credentials import add_credential_arguments, credentials_or_exit_code
from edge.cli import EXIT_OK, broker_address, fail, float_between, positive_float, positive_int


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `aggregate` verb."""
    p = sub.add_parser("aggregate", help="run the aggregator for a fleet bundle (python -m simulator prepare)",
                       description=__doc__)
    p.add_argument("--bundle", type=Path, required=True,
                   help="the bundle directory of `python -m simulator prepare --out DIR` (DIR/bundle)")
    p.add_argument("--broker", type=broker_address, default="127.0.0.1:1883",
                   help="MQTT broker, host:port or mqtt://host:port")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoint"),
                   help="checkpoint directory; an existing checkpoint is resumed")
    p.add_argument("--holdout", type=Path,
                   help=".npz with x, y to report the global student's accuracy per round (default: none)")
    p.add_argument("--signing-key", type=Path,
                   help="the fleet's private Ed25519 signing key (default: fleet-signing.key beside the bundle "
                        "directory, as `python -m simulator prepare` writes it; `python -m cloud provision` "
                        "writes DIR/aggregator/fleet-signing.key)")
    p.add_argument("--quorum", type=float_between(1e-6, 1.0),
                   help="close a round once this fraction of its cohort was accepted (default: the bundle's, "
                        "1 = all; a round also closes when every cohort device still online has answered)")
    p.add_argument("--deadline", type=positive_float,
                   help="seconds a round waits at most for devices that look online (default: the bundle's)")
    shard = p.add_mutually_exclusive_group()
    shard.add_argument("--workers", type=positive_int,
                       help="shard admission over K worker clients in this process (MQTT shared subscription, "
                            "needs mosquitto) (default: none, the single aggregator)")
    shard.add_argument("--coordinator-only", action="store_true",
                       help="coordinate workers and gateways started with `python -m cloud aggregate-worker`")
    add_credential_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve all rounds; a missing or bad bundle, holdout or checkpoint, or no broker: exit 1."""
    from cloud.serve import serve

    credentials = credentials_or_exit_code(args)
    if isinstance(credentials, int):
        return credentials
    try:
        history = serve(args.bundle, args.broker, args.checkpoint, args.holdout, credentials=credentials,
                        signing_key=args.signing_key, quorum=args.quorum, deadline_s=args.deadline,
                        workers=args.workers or 0, sharded=args.coordinator_only or bool(args.workers))
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        return fail(str(exc))
    print(f"{len(history)} rounds done; checkpoint in {args.checkpoint}")
    return EXIT_OK
