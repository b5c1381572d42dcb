"""What FedAvg is configured with and what it averages: the DP mode, the settings, an admitted update.

Apart from cloud/strategy.py so that the running sum (cloud/partial_sum.py) and the strategy can both use them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DpMode(enum.StrEnum):
    """Where Gaussian noise is added (DESIGN.md §1)."""

    NONE = "none"
    LOCAL = "local"
    CENTRAL = "central"

    @classmethod
    def parse(cls, text: str) -> DpMode:
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown DP mode {text!r}; choose one of none, local, central") from None


@dataclass(frozen=True)
class AcceptedUpdate:
    """A validated device delta ready for averaging."""

    device: str
    delta: dict[str, np.ndarray]
    num_examples: int


@dataclass(frozen=True)
class FedAvgConfig:
    """How to combine updates: DP mode, clip C, noise multiplier z (added by the server in central
    mode, by the devices in local mode), server learning rate."""

    dp_mode: DpMode = DpMode.NONE
    clip: float = 1.0
    noise_multiplier: float = 0.0
    server_lr: float = 1.0
    float_noise: bool = False  # central: GaussianSumMechanism's float noise, what the grid costs (seeded runs only)
