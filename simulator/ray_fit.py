"""The in-process clients' fits on a Ray cluster (`--engine ray` on dp-scaling and compare).

One `FitHost` actor per CPU of the cluster holds a share of the clients for the whole run: devices are dealt
to actors in blocks of `batch` consecutive clients, round-robin (device i lives on actor (i // batch) mod A),
and shipped once, when a run binds them. Each round the driver puts the global-model payload in the object
store once and asks each actor for the updates of one block's cohort members at a time (one task per block:
at 100,000 devices a task per device would cost more than the fits); it keeps at most IN_FLIGHT_PER_ACTOR
tasks per actor outstanding, so the updates waiting in the object store stay bounded, and yields them in
cohort order, so the round engine admits and sums them exactly as the local engine does.

A client must pickle: a `TrainableStudent` (a LiteRT interpreter) travels as its program's bytes and every
worker builds one interpreter per distinct program (`shared_student`), shared by its clients as the local
engine shares one.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edge.student_runtime import TrainableStudent
from simulator.in_process import Client, CohortFit

BATCH_DEVICES = 256  # devices per task and per ownership block
IN_FLIGHT_PER_ACTOR = 2  # tasks queued per actor: one running, one ready

_STUDENTS: dict[str, TrainableStudent] = {}  # this worker's interpreters, by program digest


def shared_student(program: bytes) -> TrainableStudent:
    """This process's interpreter for `program`, built on first use (a Ray worker's clients share it)."""
    key = hashlib.sha256(program).hexdigest()
    if key not in _STUDENTS:
        _STUDENTS[key] = TrainableStudent.from_bytes(program)
    return _STUDENTS[key]


def student_program(student: TrainableStudent) -> bytes:
    """What a TrainableStudent travels as: the flatbuffer it was loaded from."""
    if student.program is None:
        raise ValueError("this TrainableStudent was not loaded with TrainableStudent.from_bytes, so it cannot be "
                         "shipped to a Ray worker; build it from its program bytes")
    return student.program


def owner(index: int, batch: int, actors: int) -> int:
    """The actor that holds the client at position `index` of the fleet."""
    return (index // batch) % actors


def plan_tasks(cohort: Sequence[str], position: Mapping[str, int], batch: int,
               actors: int) -> list[tuple[int, list[str]]]:
    """The round's tasks, in cohort order: (actor, devices), each a run of cohort members of one ownership block."""
    tasks: list[tuple[int, list[str]]] = []
    last_block = None
    for device in cohort:
        block = position[device] // batch
        if block != last_block:
            tasks.append((block % actors, []))
            last_block = block
        tasks[-1][1].append(device)
    return tasks


class FitHost:
    """A Ray actor's state: its share of the clients, fitted on request."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def load(self, clients: dict[str, Client]) -> int:
        """Replace the clients this actor holds; return how many it now holds."""
        self.clients = clients
        return len(clients)

    def fit_batch(self, model_payload: bytes, round_: int, devices: list[str]) -> list[bytes]:
        """Each device's update payload for this round, in the order asked."""
        return [self.clients[d].fit(model_payload, round_) for d in devices]


class RayFanOut:
    """simulator.in_process.FanOut over `actors` FitHost actors of the running Ray session (ray_cluster)."""

    def __init__(self, actors: int, batch: int = BATCH_DEVICES) -> None:
        if actors < 1 or batch < 1:
            raise ValueError("RayFanOut needs at least one actor and one device per batch")
        import ray

        ray.util.register_serializer(TrainableStudent, serializer=student_program, deserializer=shared_student)
        self.batch = batch
        self._ray = ray
        self._actors: list[Any] = [ray.remote(num_cpus=1)(FitHost).remote() for _ in range(actors)]

    @contextlib.contextmanager
    def bind(self, clients: Mapping[str, Client]) -> Iterator[CohortFit]:
        """Ship each actor its clients, yield the cohort fit, drop the clients from the actors after."""
        ray, actors = self._ray, self._actors
        position = {device: i for i, device in enumerate(clients)}
        shares: list[dict[str, Client]] = [{} for _ in actors]
        for device, i in position.items():
            shares[owner(i, self.batch, len(actors))][device] = clients[device]
        ray.get([actor.load.remote(share) for actor, share in zip(actors, shares, strict=True)])
        del shares

        def fit_cohort(model_payload: bytes, round_: int, cohort: Sequence[str]) -> Iterator[bytes]:
            payload = ray.put(model_payload)
            tasks = iter(plan_tasks(cohort, position, self.batch, len(actors)))
            pending = deque(actors[a].fit_batch.remote(payload, round_, devices)
                            for a, devices in itertools.islice(tasks, IN_FLIGHT_PER_ACTOR * len(actors)))
            while pending:
                blobs = ray.get(pending.popleft())
                for a, devices in itertools.islice(tasks, 1):
                    pending.append(actors[a].fit_batch.remote(payload, round_, devices))
                yield from blobs

        try:
            yield fit_cohort
        finally:
            ray.get([actor.load.remote({}) for actor in actors])

    def close(self) -> None:
        """End the actors (their worker processes exit)."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
