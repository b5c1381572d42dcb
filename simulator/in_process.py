"""The in-memory transport of the round engine: devices are Python objects, payloads are real wire blobs.

A `Client` (Flower's word) turns the round's global-model payload into its update payload, the
same bytes an MQTT device would publish; `run_rounds` hands every cohort member the payload,
offers each update to the engine's inbox (admission is the engine's, as over MQTT) and applies
the round. `StudentClient` runs exactly the device code of edge.agent.DeviceAgent.

Who runs the fits is a `FanOut`: here, one after the other in this process (`SEQUENTIAL`); on a Ray cluster,
simulator.ray_fit.RayFanOut. Either yields the updates in cohort order, so the engine admits and sums them in
the same order and a seed gives the same result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cloud.round_engine import RoundEngine, RoundRecord, RoundState
from edge.local_training import distillation_targets, labels_in_use, train_round, update_payload
from edge.noise_source import InsecureSeededNoise, SecureNoise
from edge.plan import DevicePlan
from edge.seeding import noise_generator, round_generator, rounding_generator
from edge.student_runtime import TrainableStudent
from edge.wire import decode_weights


class Client(Protocol):
    """One simulated device: `fit` trains on the global model payload and returns an update payload."""

    def fit(self, model_payload: bytes, round_: int) -> bytes: ...


CohortFit = Callable[[bytes, int, Sequence[str]], Iterator[bytes]]  # (model payload, round, cohort) -> updates


class FanOut(Protocol):
    """Where the clients' fits run: `bind(clients)` opens a CohortFit over them for the duration of a run."""

    def bind(self, clients: Mapping[str, Client]) -> AbstractContextManager[CohortFit]: ...


class SequentialFanOut:
    """Every fit in this process, one after the other, in cohort order (the local engine)."""

    @contextlib.contextmanager
    def bind(self, clients: Mapping[str, Client]) -> Iterator[CohortFit]:
        def fit_cohort(model_payload: bytes, round_: int, cohort: Sequence[str]) -> Iterator[bytes]:
            return (clients[device].fit(model_payload, round_) for device in cohort)

        yield fit_cohort


SEQUENTIAL = SequentialFanOut()


@dataclass
class InProcessRun:
    """The final state, every round's record, and the payload bytes that crossed the in-memory wire."""

    state: RoundState
    records: list[RoundRecord] = field(default_factory=list)
    bytes_up: list[int] = field(default_factory=list)
    bytes_down: list[int] = field(default_factory=list)


def run_rounds(engine: RoundEngine, state: RoundState, clients: Mapping[str, Client],
               on_round: Callable[[RoundRecord], None] | None = None,
               fan_out: FanOut = SEQUENTIAL) -> InProcessRun:
    """Drive `engine` from `state` until it stops, every cohort member fitting each round (where fan_out says)."""
    run = InProcessRun(state)
    with fan_out.bind(clients) as fit_cohort:
        while engine.stop_reason(run.state) is None:
            opened = engine.open_round(run.state)
            up = 0
            for device, blob in zip(opened.cohort, fit_cohort(opened.model_payload, opened.round, opened.cohort),
                                    strict=True):
                up += len(blob)
                opened.inbox.offer(device, opened.round, blob)
            run.state, record = engine.apply(run.state, opened)
            run.records.append(record)
            run.bytes_up.append(up)
            # what a device downloads: the step from the version before, else the whole model
            run.bytes_down.append(len(opened.step_payload or opened.model_payload) * len(opened.cohort))
            if on_round is not None:
                on_round(record)
    return run


@dataclass
class StudentClient:
    """A device distilling into the LiteRT student from its shard's logits, as DeviceAgent does.

    samples_per_round: draw that many of the local rows (with replacement, from the round's
    Generator) every round instead of training on all of them (dp-scaling's virtual devices)."""

    plan: DevicePlan
    student: TrainableStudent
    x_flat: np.ndarray
    targets: np.ndarray
    shard_logits: np.ndarray
    seed: np.random.SeedSequence
    samples_per_round: int | None = None
    insecure_seeded_noise: bool = False  # local DP noise from `seed` (reproducible) instead of OS entropy

    @classmethod
    def from_shard_logits(cls, plan: DevicePlan, student: TrainableStudent, x: np.ndarray, y: np.ndarray | None,
                          shard_logits: np.ndarray, seed: np.random.SeedSequence,
                          samples_per_round: int | None = None,
                          insecure_seeded_noise: bool = False) -> StudentClient:
        """A client whose hard targets are its labels (or the shard's arg-max where it has none)."""
        targets = distillation_targets(shard_logits, labels_in_use(y, plan.labelled_fraction), student.num_classes)
        return cls(plan, student, np.asarray(x, np.float32).reshape(len(x), -1), targets, shard_logits, seed,
                   samples_per_round, insecure_seeded_noise)

    def fit(self, model_payload: bytes, round_: int) -> bytes:
        weights, meta = decode_weights(model_payload)
        rng = round_generator(self.seed, round_)
        x, t, z = self.x_flat, self.targets, self.shard_logits
        if self.samples_per_round is not None:
            idx = rng.integers(0, len(x), self.samples_per_round)
            x, t, z = x[idx], t[idx], z[idx]
        noise = (InsecureSeededNoise(noise_generator(self.seed, round_)) if self.insecure_seeded_noise
                 else SecureNoise())
        result = train_round(self.student, weights, x, t, z, self.plan, rng, noise)
        return update_payload(result, self.plan, round_, meta.version, rounding_generator(self.seed, round_))
