"""`python -m edge run`: one device agent against a real broker (numpy + LiteRT + paho only).

The device's local data is a .npz file with `x` (N, H, W, C float32 images in [0, 1]) and,
optionally, `y` (N integer labels; without it the shard's arg-max is the hard target).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edge.broker_credentials import add_credential_arguments, credentials_or_exit_code
from edge.cli import (
    EXIT_OK,
    CliParser,
    add_log_level,
    broker_address,
    configure_logging,
    fail,
    output_path_problem,
    seed_int,
    topic_name,
)

log = logging.getLogger("dmskd.edge")
PLAN_WAIT_WARNING_S = 30.0  # a device still without a plan says so this often


def load_device_data(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the device's .npz (x, optionally y; UNLABELLED = -1 for a sample without its label), checked."""
    from edge.local_training import UNLABELLED
    from edge.npz_file import load_examples

    return load_examples(path, "device data", "write it with `python -m simulator prepare --out DIR` (it writes "
                         "DIR/devices/<device>.npz)", labels_required=False, lowest_label=UNLABELLED)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m edge` parser (edge.cli convention)."""
    p = CliParser(prog="python -m edge", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="run one device until the round schedule ends", description=__doc__)
    run.add_argument("--device", type=topic_name, required=True, help="this device's id, as in the fleet's plans")
    run.add_argument("--fleet", type=topic_name, default="demo", help="fleet name: the topic prefix dmskd/<fleet>/")
    run.add_argument("--data", type=Path, required=True, help=".npz with x (and optionally y)")
    run.add_argument("--broker", type=broker_address, default="127.0.0.1:1883",
                     help="MQTT broker, host:port or mqtt://host:port")
    run.add_argument("--outbox", type=Path, default=Path("outbox"), help="on-disk outbox for unacknowledged updates")
    run.add_argument("--fleet-key", type=Path, required=True,
                     help="the fleet's public signing key (fleet-signing.pub from `python -m cloud provision` or "
                          "`python -m simulator prepare`): the device acts only on what it signed")
    add_credential_arguments(run)
    run.add_argument("--insecure-seed", type=seed_int, default=None,
                     help="INSECURE, for tests and reproducible simulations only: seed the device's training "
                          "and its DP noise, which anyone who knows the seed can then subtract (default: OS "
                          "entropy and the exact sampler)")
    add_log_level(run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the verb; exit codes as in edge.cli (0 done, 1 failed, 2 bad command line)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    from edge.agent import DeviceAgent
    from edge.broker_address import parse_broker_url
    from edge.mqtt_session import MqttSession
    from edge.signed_artifact import load_public_key
    from edge.topics import FleetTopics

    credentials = credentials_or_exit_code(args)
    if isinstance(credentials, int):
        return credentials
    problem = output_path_problem(args.outbox, "--outbox", directory=True)
    if problem:
        return fail(problem)
    try:
        host, port = parse_broker_url(args.broker)
        x, y = load_device_data(args.data)
        session = MqttSession(f"{args.fleet}-{args.device}", host, port,
                              will=(FleetTopics(args.fleet).status(args.device), b"offline"), tls=credentials.tls,
                              username=credentials.username, password=credentials.password)
        fleet_key = load_public_key(args.fleet_key)
        seed = None if args.insecure_seed is None else np.random.SeedSequence(args.insecure_seed)
        agent = DeviceAgent(args.device, args.fleet, session, x, y, fleet_key, seed=seed,
                            outbox_dir=args.outbox).start()
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        return fail(str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    warned = 0.0
    try:
        while not stop.is_set() and not agent.finished.wait(0.5):
            waited = time.monotonic() - started
            if agent.plan is None and waited - warned >= PLAN_WAIT_WARNING_S:
                warned = waited
                log.warning("%s: no plan after %.0f s on dmskd/%s at %s: is the aggregator running "
                            "(python -m cloud aggregate), and are --fleet and --broker its?",
                            args.device, waited, args.fleet, args.broker)
    except KeyboardInterrupt:
        pass
    agent.stop()
    if agent.unknown_device is not None:
        return fail(agent.unknown_device)
    print(f"{args.device}: rounds done {sorted(agent.rounds_done)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
