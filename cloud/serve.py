"""`python -m cloud aggregate`: run the aggregator service for a fleet bundle against a broker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cloud.aggregator import AggregatorService
from cloud.evaluation import holdout_evaluator
from cloud.fleet_bundle import load_bundle
from cloud.reducer import ShardedAggregatorService, start_local_workers
from cloud.round_closing import RoundPolicy
from cloud.round_engine import RoundRecord
from edge.broker_address import parse_broker_url
from edge.broker_credentials import BrokerCredentials
from edge.mqtt_session import MqttSession
from edge.signed_artifact import PRIVATE_KEY_FILE, load_signing_key

log = logging.getLogger("dmskd.aggregator")


def log_round(record: RoundRecord) -> None:
    """One INFO line per round: accepted, rejected (per reason), accuracy when evaluated."""
    acc = f", accuracy {record.metrics['accuracy']:.4f}" if "accuracy" in record.metrics else ""
    reasons = f" ({record.rejected.breakdown()})" if record.rejected.total else ""
    log.info("round %d: %d accepted, %d rejected%s%s", record.round, len(record.accepted), record.rejected.total,
             reasons, acc)


def serve(bundle_dir: Path, broker: str, checkpoint_dir: Path, holdout: Path | None = None,
          seed: int | None = None, credentials: BrokerCredentials | None = None,
          signing_key: Path | None = None, quorum: float | None = None, deadline_s: float | None = None,
          on_round_end: Callable[[RoundRecord], None] = log_round, workers: int = 0,
          sharded: bool = False) -> list[dict]:
    """Publish the bundle's fleet and run all rounds; resumes from checkpoint_dir if it holds one.

    seed: None draws the server's randomness and DP noise from OS entropy; an int (INSECURE, tests and
    simulations only) seeds both. credentials: the aggregator's TLS files or login (python -m cloud provision).
    signing_key: the fleet's private signing key (default: fleet-signing.key beside the bundle directory).
    quorum, deadline_s: when rounds close (cloud.round_closing), instead of the bundle's settings.
    on_round_end: called with each closed round's record (default: one INFO line).
    sharded: coordinate workers (cloud/reducer.py) instead of admitting updates; workers: start that many in
    this process (others may join: `python -m cloud aggregate-worker`)."""
    bundle = load_bundle(bundle_dir)
    st = bundle.settings
    policy = RoundPolicy(st.quorum_fraction if quorum is None else quorum,
                         st.deadline_s if deadline_s is None else deadline_s)
    key = load_signing_key(signing_key or Path(bundle_dir).parent / PRIVATE_KEY_FILE)
    host, port = parse_broker_url(broker)
    evaluate = holdout_evaluator(bundle.student_program, holdout) if holdout else None
    creds = credentials or BrokerCredentials()
    session = MqttSession(f"{bundle.settings.fleet}-aggregator", host, port, st.chunk_limit, tls=creds.tls,
                          username=creds.username, password=creds.password)
    kind = ShardedAggregatorService if sharded or workers else AggregatorService
    local_workers = start_local_workers(bundle, host, port, creds, workers, seed)
    service = kind.from_bundle(bundle, session, np.random.SeedSequence(seed), key, checkpoint_dir,
                                            evaluate, on_round_end=on_round_end, insecure_seeded_noise=seed is not None,
                                            policy=policy)
    session.connect()
    try:
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        return service.run()
    finally:
        for worker in local_workers:
            worker.session.close()
        session.close()
