"""`python -m cloud aggregate`: run the aggregator service for a fleet bundle against a broker."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cloud.aggregator import AggregatorService, Evaluate
from cloud.fleet_bundle import load_bundle
from edge.broker_address import parse_broker_url
from edge.mqtt_session import MqttSession
from edge.student_runtime import TrainableStudent


def student_evaluator(program: bytes, x: np.ndarray, y: np.ndarray) -> Evaluate:
    """Accuracy of given student weights on (x, y), computed by the same LiteRT program devices run."""
    student = TrainableStudent.from_bytes(program)
    flat = x.reshape(len(x), -1)

    def evaluate(weights: dict[str, np.ndarray]) -> dict:
        student.set_weights(weights)
        return {"accuracy": float(np.mean(np.argmax(student.predict_logits(flat), 1) == y))}

    return evaluate


def holdout_evaluator(program: bytes, npz: Path) -> Evaluate:
    """student_evaluator on a held-out .npz with arrays x, y."""
    with np.load(npz) as z:
        return student_evaluator(program, z["x"].astype(np.float32), z["y"])


def serve(bundle_dir: Path, broker: str, checkpoint_dir: Path, holdout: Path | None = None) -> list[dict]:
    """Publish the bundle's fleet and run all rounds; resumes from checkpoint_dir if it holds one."""
    bundle = load_bundle(bundle_dir)
    host, port = parse_broker_url(broker)
    evaluate = holdout_evaluator(bundle.student_program, holdout) if holdout else None
    session = MqttSession(f"{bundle.settings.fleet}-aggregator", host, port)

    def report(record: dict) -> None:
        acc = f", accuracy {record['accuracy']:.4f}" if "accuracy" in record else ""
        logging.getLogger("dmskd.aggregator").info(
            "round %d: %d accepted, %d rejected%s", record["round"], len(record["accepted"]),
            len(record["rejected"]), acc)

    service = AggregatorService.from_bundle(bundle, session, checkpoint_dir, evaluate, on_round_end=report)
    session.connect()
    try:
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        return service.run()
    finally:
        session.close()
