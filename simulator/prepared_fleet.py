"""A fleet written by `python -m simulator prepare`, read with the edge stack only, and one device's round on it.

The Flower side of `bench-scale` (simulator/flower_side.py) runs in an environment without TensorFlow or cloud/,
so this module reads the bundle's files itself (plans.json, student.tflite, student_init.safetensors,
shards/*.tflite, devices/<id>.npz, test.npz) and trains exactly as a DMSKD device does (edge/agent.py's
_maybe_train): the shard's logits on the local data, the plan's labels, edge.local_training.train_round with
the device's round Generator (edge.seeding), one interpreter per program and process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from edge.local_training import distillation_targets, labels_in_use, train_round
from edge.npz_file import load_examples
from edge.plan import DevicePlan
from edge.seeding import FleetSeeds, round_generator
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent

PREPARE_FIX = "write one with `python -m simulator prepare --out DIR --devices N --rounds R`"


@dataclass
class PreparedFleet:
    """Plans, programs and initial weights of a prepared fleet; device data, interpreters and logits on demand."""

    root: Path
    plans: list[DevicePlan]
    student_program: bytes
    initial_weights: dict[str, np.ndarray]
    seeds: FleetSeeds
    _student: TrainableStudent | None = None
    _shards: dict[str, ShardRunner] = field(default_factory=dict)
    _devices: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path, seed: int = 0) -> PreparedFleet:
        """Read DIR/bundle of a prepared fleet; FileNotFoundError names a missing file and how to make one."""
        root = Path(root)
        bundle = root / "bundle"
        for name in ("plans.json", "student.tflite", "student_init.safetensors"):
            if not (bundle / name).exists():
                raise FileNotFoundError(f"{bundle / name} missing; {PREPARE_FIX}")
        raw_plans = json.loads((bundle / "plans.json").read_text())
        plans = [DevicePlan.from_json(json.dumps(raw).encode()) for raw in raw_plans]
        initial = load_file(str(bundle / "student_init.safetensors"))
        weights = {k: np.asarray(v, dtype=np.float32) for k, v in initial.items()}
        program = (bundle / "student.tflite").read_bytes()
        return cls(root, plans, program, weights, FleetSeeds.from_seed(seed, len(plans)))

    @property
    def weight_names(self) -> list[str]:
        """The student's tensor names in a fixed order: how weights travel as a list of arrays."""
        return sorted(self.initial_weights)

    def student(self) -> TrainableStudent:
        """This process's interpreter of the student program (a DMSKD worker thread also holds one)."""
        if self._student is None:
            self._student = TrainableStudent.from_bytes(self.student_program)
        return self._student

    def _device(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(images, labels, shard logits) of device `index`, computed once per process as a device caches them."""
        if index not in self._devices:
            plan = self.plans[index]
            x, y = load_examples(self.root / "devices" / f"{plan.device}.npz", f"data of {plan.device}", PREPARE_FIX,
                                 labels_required=False, lowest_label=-1)
            if plan.shard_id not in self._shards:
                blob = (self.root / "bundle" / "shards" / f"{plan.shard_id}.tflite").read_bytes()
                self._shards[plan.shard_id] = ShardRunner.from_bytes(blob)
            self._devices[index] = (x, y, self._shards[plan.shard_id].logits(x))
        return self._devices[index]

    def device_round(self, index: int, weights: dict[str, np.ndarray],
                     round_: int) -> tuple[dict[str, np.ndarray], int]:
        """Device `index`'s local round from the global `weights`: (its new local weights, its FedAvg weight).

        The same calls as edge.agent.DeviceAgent._maybe_train (the delta clipped; DP noise is not benchmarked)."""
        plan = self.plans[index]
        if plan.dp_mode != "none":
            raise ValueError(f"the Flower side benchmarks --dp none only; {plan.device}'s plan is in "
                             f"{plan.dp_mode} mode")
        x, labels, logits = self._device(index)
        student = self.student()
        targets = distillation_targets(logits, labels_in_use(labels, plan.labelled_fraction), student.num_classes)
        result = train_round(student, weights, x.reshape(len(x), -1), targets, logits, plan,
                             round_generator(self.seeds.devices[index], round_))
        return {k: weights[k] + result.delta[k] for k in weights}, min(result.num_examples, plan.max_examples)

    def test_accuracy(self, weights: dict[str, np.ndarray]) -> float:
        """The student's accuracy on DIR/test.npz (the DMSKD aggregator's test split)."""
        x, y = load_examples(self.root / "test.npz", "test split", PREPARE_FIX, labels_required=True)
        student = self.student()
        student.set_weights(weights)
        return float(student.accuracy(x.reshape(len(x), -1), y))
