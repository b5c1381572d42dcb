"""`python -m cloud aggregate-worker`: one worker (or, with --gateway-for, a gateway) of a sharded aggregator.

Start the coordinator with `python -m cloud aggregate --coordinator-only` (or `--workers K` to run K workers in
its own process), then any number of these against the same broker and bundle; cloud/reducer.py and
cloud/aggregator_worker.py say how rounds are shared."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from edge.broker_credentials import BrokerCredentials, add_credential_arguments, credentials_or_exit_code
from edge.cli import EXIT_OK, broker_address, fail

log = logging.getLogger("dmskd.aggregator.worker")

WORKER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def worker_id(text: str) -> str:
    """A worker id: it names MQTT topics, so letters, digits, _ and - only."""
    if not WORKER_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"worker id {text!r}: use 1 to 64 letters, digits, '_' or '-'")
    return text


def meter_list(text: str) -> list[str]:
    """Comma-separated device ids of a gateway's meters."""
    meters = [m.strip() for m in text.split(",") if m.strip()]
    if not meters:
        raise argparse.ArgumentTypeError("--gateway-for needs at least one device id, e.g. meter-1,meter-2")
    return meters


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `aggregate-worker` verb."""
    p = sub.add_parser("aggregate-worker", help="one worker or gateway of a sharded aggregator",
                       description=__doc__)
    p.add_argument("--bundle", type=Path, required=True, help="the fleet bundle directory the coordinator serves")
    p.add_argument("--broker", type=broker_address, default="127.0.0.1:1883",
                   help="MQTT broker, host:port or mqtt://host:port")
    p.add_argument("--id", type=worker_id, required=True, dest="worker_id",
                   help="this worker's id, unique among the fleet's workers and gateways")
    p.add_argument("--gateway-for", type=meter_list, dest="meters",
                   help="be a gateway: admit only these devices' updates, comma-separated ids (default: none, a "
                        "worker taking its share of every device's)")
    add_credential_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve rounds until the coordinator says the schedule is done; a bad bundle or no broker: exit 1."""
    credentials = credentials_or_exit_code(args)
    if isinstance(credentials, int):
        return credentials
    try:
        serve_worker(args.bundle, args.broker, args.worker_id, credentials, args.meters)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        return fail(str(exc))
    return EXIT_OK


def serve_worker(bundle_dir: Path, broker: str, worker: str, credentials: BrokerCredentials,
                 meters: list[str] | None = None) -> None:
    """Run one worker (gateway, with meters) until the coordinator's done notice, or Ctrl-C."""
    import numpy as np

    from cloud.aggregator_worker import AggregatorWorker, worker_will
    from cloud.fleet_bundle import load_bundle
    from edge.broker_address import parse_broker_url
    from edge.mqtt_session import MqttSession

    bundle = load_bundle(bundle_dir)
    fleet = bundle.settings.fleet
    unknown = sorted(set(meters or ()) - {p.device for p in bundle.plans})
    if unknown:
        raise ValueError(f"--gateway-for names devices not in the bundle's plan: {unknown[:5]}")
    host, port = parse_broker_url(broker)
    session = MqttSession(f"{fleet}-aggregator-{worker}", host, port, bundle.settings.chunk_limit,
                          will=worker_will(fleet, worker),
                          tls=credentials.tls, username=credentials.username, password=credentials.password)
    service = AggregatorWorker.from_bundle(bundle, session, np.random.SeedSequence(), worker, meters=meters)
    session.connect()
    try:
        while not service.finished.wait(1.0):
            pass
        log.info("%s: schedule done after %d admitted updates, %d partial sums sent", worker, service.admitted,
                 service.partials_sent)
    except KeyboardInterrupt:
        log.warning("%s: interrupted; the coordinator withdraws this worker's open grants", worker)
    finally:
        session.close()
