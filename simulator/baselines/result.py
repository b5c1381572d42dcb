"""What one method of the comparison measured: accuracy, bytes on the wire, epsilon, FLOPs, time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.in_process import InProcessRun


@dataclass
class MethodResult:
    """One row of the comparison, with its per-round history.

    bytes_up/down_per_round: payload bytes of every device's update / global-model download, summed
    over devices, from the serialised blobs; one_off_bytes: downloads paid once per device (shards,
    student program); flops_per_epoch_mean: local FLOPs of one epoch, mean over devices."""

    method: str
    initial_accuracy: float
    accuracy_per_round: list[float] = field(default_factory=list)
    bytes_up_per_round: list[int] = field(default_factory=list)
    bytes_down_per_round: list[int] = field(default_factory=list)
    one_off_bytes: int = 0
    params: int = 0  # parameters of the federated model (what an update carries)
    epsilon: float = 0.0
    noise_multiplier: float = 0.0
    flops_per_epoch_mean: float = 0.0
    wall_seconds: float = 0.0
    notes: str = ""
    initial_device_accuracy: float = float("nan")  # mean over devices, on each device's own held-out data
    device_accuracy_per_round: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy_per_round[-1] if self.accuracy_per_round else self.initial_accuracy

    @property
    def final_device_accuracy(self) -> float:
        return self.device_accuracy_per_round[-1] if self.device_accuracy_per_round else self.initial_device_accuracy

    @property
    def bytes_per_round(self) -> list[int]:
        return [u + d for u, d in zip(self.bytes_up_per_round, self.bytes_down_per_round)]

    @property
    def bytes_total(self) -> int:
        return sum(self.bytes_per_round) + self.one_off_bytes

    def record_round(self, accuracy: float, bytes_up: int, bytes_down: int) -> None:
        self.accuracy_per_round.append(float(accuracy))
        self.bytes_up_per_round.append(int(bytes_up))
        self.bytes_down_per_round.append(int(bytes_down))

    def record_run(self, run: InProcessRun) -> None:
        """Take accuracy, bytes and epsilon of every round of an in-process run."""
        for record, up, down in zip(run.records, run.bytes_up, run.bytes_down):
            self.record_round(record.metrics["accuracy"], up, down)
            if "device_accuracy" in record.metrics:
                self.device_accuracy_per_round.append(record.metrics["device_accuracy"])
        if run.state.ledger is not None:
            self.epsilon = run.state.ledger.epsilon

    def to_dict(self) -> dict:
        return {**asdict(self), "final_accuracy": self.final_accuracy,
                "final_device_accuracy": self.final_device_accuracy, "bytes_per_round": self.bytes_per_round,
                "bytes_total": self.bytes_total}
