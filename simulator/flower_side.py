"""Flower's simulation engine on a prepared DMSKD fleet: `bench-scale`'s comparison, run in the Flower environment.

    .venv-flower/bin/python -m simulator.flower_side --fleet DIR --rounds R --out flower.json

flwr.simulation.run_simulation (Ray backend) with one virtual SuperNode per device of DIR (written by
`python -m simulator prepare`); each ClientApp train call is that device's DMSKD local round
(simulator.prepared_fleet.PreparedFleet.device_round: the same student program in LiteRT, shard logits,
edge.local_training.train_round, clipping and seeds), the ServerApp runs Flower's FedAvg weighted by the
examples each device reports. A round's time is the span between the centralised evaluation calls Flower
makes before the first round and after each round, less the evaluation itself. Writes `--out` as JSON.
Imports flwr, numpy and edge/ only: this environment has no TensorFlow (simulator/bench_flower_env.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from simulator.prepared_fleet import PreparedFleet

FLEET_ENV = "DMSKD_FLOWER_FLEET"  # the Ray workers inherit it: where each ClientApp finds the prepared fleet
SEED_ENV = "DMSKD_FLOWER_SEED"
_FLEETS: dict[str, PreparedFleet] = {}  # per process: one fleet, its interpreters and device logits


def fleet() -> PreparedFleet:
    """The prepared fleet this process serves, loaded once."""
    root = os.environ[FLEET_ENV]
    if root not in _FLEETS:
        _FLEETS[root] = PreparedFleet.load(root, int(os.environ.get(SEED_ENV, "0")))
    return _FLEETS[root]


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One device's DMSKD local round on the global arrays; replies its local weights and example count."""
    f = fleet()
    index = int(context.node_config["partition-id"])
    names = f.weight_names
    weights = dict(zip(names, msg.content["arrays"].to_numpy_ndarrays(), strict=True))
    server_round = int(msg.content["config"]["server-round"])  # Flower counts from 1, DMSKD from 0
    started = time.perf_counter()
    local, examples = f.device_round(index, weights, server_round - 1)
    seconds = time.perf_counter() - started
    content = RecordDict({"arrays": ArrayRecord([local[k] for k in names]),
                          "metrics": MetricRecord({"num-examples": examples, "train-seconds": seconds})})
    return Message(content=content, reply_to=msg)


@dataclass
class RoundClock:
    """Timestamps of Flower's centralised evaluations: round r spans the end of one to the start of the next."""

    fleet: PreparedFleet
    entered: list[float] = field(default_factory=list)
    left: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        self.entered.append(time.monotonic())
        weights = dict(zip(self.fleet.weight_names, arrays.to_numpy_ndarrays(), strict=True))
        self.accuracy.append(self.fleet.test_accuracy(weights))
        self.left.append(time.monotonic())
        return MetricRecord({"accuracy": self.accuracy[-1]})

    def round_seconds(self) -> list[float]:
        return [start - end for end, start in zip(self.left[:-1], self.entered[1:])]


class CountingFedAvg(FedAvg):
    """Flower's FedAvg, counting the replies without an error that each round aggregated and the seconds their
    local training took (summed over devices: how much of a round is DMSKD's device code, not Flower)."""

    def __init__(self, devices: int) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=devices,
                         min_available_nodes=devices)
        self.replies: list[int] = []
        self.train_seconds: list[float] = []

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        good = [m for m in replies if not m.has_error()]
        self.replies.append(len(good))
        self.train_seconds.append(sum(float(m.content["metrics"]["train-seconds"]) for m in good))
        return super().aggregate_train(server_round, replies)


@dataclass
class FlowerRun:
    """What the ServerApp records for the benchmark."""

    rounds: int
    clock: RoundClock
    strategy: CountingFedAvg


RUNS: list[FlowerRun] = []


server_app = ServerApp()


@server_app.main()
def main_server(grid: Grid, context: Context) -> None:
    """FedAvg over every virtual SuperNode for RUNS[-1].rounds rounds, clocked by centralised evaluation."""
    run = RUNS[-1]
    f = run.clock.fleet
    initial = ArrayRecord([f.initial_weights[k] for k in f.weight_names])
    run.strategy.start(grid=grid, initial_arrays=initial, num_rounds=run.rounds, evaluate_fn=run.clock.evaluate)


def run_flower(root: Path, rounds: int, seed: int, cpus_per_client: float) -> dict:
    """Run the simulation on the fleet at `root`; the figures bench-scale reads."""
    os.environ[FLEET_ENV], os.environ[SEED_ENV] = str(root.resolve()), str(seed)
    f = fleet()
    devices = len(f.plans)
    run = FlowerRun(rounds, RoundClock(f), CountingFedAvg(devices))
    RUNS.append(run)
    started = time.monotonic()
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=devices,
                   backend_config={"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": os.cpu_count() or 1, "include_dashboard": False}})
    seconds = run.clock.round_seconds()
    return {"devices": devices, "rounds_requested": rounds, "round_seconds": seconds,
            "accepted_per_round": run.strategy.replies, "train_seconds_per_round": run.strategy.train_seconds,
            "accuracy_after_round": run.clock.accuracy[1:],
            "start_accuracy": run.clock.accuracy[0] if run.clock.accuracy else None,
            "wall_seconds": time.monotonic() - started,
            "completed": len(seconds) == rounds and all(n == devices for n in run.strategy.replies),
            "flwr": version("flwr"), "ray": version("ray"), "cpus_per_client": cpus_per_client}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, write --out."""
    p = argparse.ArgumentParser(prog="python -m simulator.flower_side", description=__doc__.split("\n\n")[0])
    p.add_argument("--fleet", type=Path, required=True, help="directory written by `python -m simulator prepare`")
    p.add_argument("--rounds", type=int, default=3, help="federated rounds")
    p.add_argument("--seed", type=int, default=0, help="the fleet's seed (the devices' Generators)")
    p.add_argument("--cpus-per-client", type=float, default=1.0,
                   help="Ray CPUs per virtual client (this machine's cores / this = clients training at once)")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = p.parse_args(argv)
    try:
        figures = run_flower(args.fleet, args.rounds, args.seed, args.cpus_per_client)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    # Ray pickles the ClientApp for its workers: its functions must live in an importable module, not __main__
    from simulator.flower_side import main as imported_main

    sys.exit(imported_main())
