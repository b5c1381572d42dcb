"""What one in-process baseline run federates with: rounds, local training, aggregation, seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.strategy import DpMode, FedAvgConfig
from edge.plan import TrainingSettings
from edge.wire import FLOAT32_DELTA
from simulator.in_process import SEQUENTIAL, FanOut


class NoLabelledDevices(ValueError):
    """A supervised baseline asked of a fleet whose devices hold no labels."""


@dataclass(frozen=True)
class BaselineSettings:
    """One method's run: `training` on the devices, `aggregation` on the server, `encoding` of updates."""

    rounds: int
    training: TrainingSettings = TrainingSettings()
    aggregation: FedAvgConfig = FedAvgConfig()
    encoding: str = FLOAT32_DELTA
    delta: float = 1e-5
    seed: int = 0
    fleet: str = "compare"
    insecure_seeded_noise: bool = False  # DP noise from `seed` (reproducible) instead of OS entropy
    fan_out: FanOut = field(default=SEQUENTIAL, compare=False, repr=False)  # where the LiteRT students' fits run

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1 (--rounds), got {self.rounds}")
        if self.aggregation.dp_mode is not DpMode.NONE and self.aggregation.clip != self.training.clip:
            raise ValueError(f"the server's clip {self.aggregation.clip} differs from the devices' "
                             f"{self.training.clip}; use one clip C")
