"""The C plan parser reads what edge.plan.DevicePlan.to_json writes, derives the same training declaration
digest, and refuses what DevicePlan.from_json refuses."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from edge.plan import DevicePlan, TrainingSettings
from edge.wire import training_digest

from .core_driver import run

BASE = DevicePlan(fleet="demo", device="dev007", shard_id="s2", shard_hash="ab" * 8, student_hash="cd" * 8,
                  rounds=30)

PLANS = {
    "defaults": BASE,
    "local-dp-quantised": DevicePlan(**{**asdict(BASE), "training": TrainingSettings(), "dp_mode": "local",
                                        "noise_multiplier": 1.1, "update_bits": 4, "model_bits": 8,
                                        "max_examples": 640, "labelled_fraction": 0.25}),
    "odd-training": DevicePlan(**{**asdict(BASE), "training": TrainingSettings(alpha=0.0, tau=1e-05, lr=0.001,
                                                                               local_epochs=1, batch_size=32,
                                                                               clip=12345678901234567.0)}),
    "integer-clip": DevicePlan(**{**asdict(BASE), "training": TrainingSettings(clip=2, lr=1)}),
}


def c_plan(cli: Path, tmp: Path, payload: bytes):
    (tmp / "plan.json").write_bytes(payload)
    return run(cli, "plan", tmp / "plan.json")


@pytest.mark.parametrize("name", sorted(PLANS))
def test_c_reads_the_plan_and_its_training_digest(core_cli: Path, tmp_path: Path, name: str) -> None:
    plan = PLANS[name]
    result = c_plan(core_cli, tmp_path, plan.to_json())
    assert result.ok, result.out
    out = result.out
    assert out["training_digest"] == training_digest(plan.training.declaration())
    assert (out["fleet"], out["device"], out["shard_id"], out["rounds"]) == (plan.fleet, plan.device, plan.shard_id,
                                                                             plan.rounds)
    assert (out["dp_mode"], out["noise_multiplier"], out["clip"]) == (plan.dp_mode, plan.noise_multiplier, plan.clip)
    assert (out["update_bits"], out["model_bits"], out["max_examples"]) == (plan.update_bits, plan.model_bits,
                                                                           plan.max_examples)
    t = plan.training
    assert (out["alpha"], out["tau"], out["lr"], out["local_epochs"], out["batch_size"]) == (
        t.alpha, t.tau, t.lr, t.local_epochs, t.batch_size)


def test_the_documented_default_digest(core_cli: Path, tmp_path: Path) -> None:
    raw = json.loads(BASE.to_json())
    del raw["training"]  # absent training settings are the defaults, as in DevicePlan
    result = c_plan(core_cli, tmp_path, json.dumps(raw).encode())
    assert result.out["training_digest"] == "f1731cfd17effbfa"  # docs/wire-protocol.md


def _edit(**changes: object) -> bytes:
    raw = json.loads(BASE.to_json())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return json.dumps(raw).encode()


BAD = {
    "not-json": (b"{plan", "not JSON"),
    "not-an-object": (b"[1, 2]", "JSON object"),
    "unknown-field": (_edit(firmware_blob="x"), "unknown fields ['firmware_blob']"),
    "missing-rounds": (_edit(rounds=None), "missing fields ['rounds']"),
    "missing-two": (_edit(fleet=None, shard_hash=None), "missing fields ['fleet', 'shard_hash']"),
    "rounds-float": (_edit(rounds=3.5), "'rounds' must be"),
    "rounds-bool": (_edit(rounds=True), "'rounds' must be"),
    "zero-rounds": (_edit(rounds=0), "rounds >= 1"),
    "bad-dp-mode": (_edit(dp_mode="global"), "dp_mode 'global' is not one of"),
    "bad-update-bits": (_edit(update_bits=16), "update_bits must be one of (32, 8, 4, 2)"),
    "bad-model-bits": (_edit(model_bits=1), "model_bits must be one of"),
    "negative-noise": (_edit(noise_multiplier=-0.5), "noise_multiplier >= 0"),
    "zero-max-examples": (_edit(max_examples=0), "max_examples must be at least 1"),
    "labelled-over-one": (_edit(labelled_fraction=1.5), "labelled_fraction must be in [0, 1]"),
    "training-unknown": (_edit(training={"alpha": 0.5, "momentum": 0.9}), "unknown fields ['momentum']"),
    "training-not-object": (_edit(training=[1]), "must be an object"),
    "alpha-over-one": (_edit(training={"alpha": 1.5}), "alpha must be in [0, 1]"),
    "negative-lr": (_edit(training={"lr": -0.1}), "lr must be a positive number"),
    "zero-batch": (_edit(training={"batch_size": 0}), "at least 1"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_c_refuses_the_plans_python_refuses(core_cli: Path, tmp_path: Path, name: str) -> None:
    payload, detail = BAD[name]
    with pytest.raises(ValueError) as python:
        DevicePlan.from_json(payload)
    result = c_plan(core_cli, tmp_path, payload)
    assert not result.ok and result.out["reason"] == "plan_rejected", result.out
    assert detail in result.out["message"], (result.out["message"], str(python.value))
    assert detail in str(python.value) or name in ("not-json", "rounds-bool", "rounds-float")
