"""Reproducible randomness for simulations: one numpy SeedSequence per fleet, spawned per party and round.

The tree is root -> [server, device 0, device 1, ...] -> one child per round, exactly what
`SeedSequence.spawn` produces, computed without mutating a parent so that a resumed run (or a
device that skipped rounds) draws the same numbers. Seeded noise is for tests and simulations:
a deployment's devices draw from OS entropy (`SeedSequence()` with no entropy given).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


def spawned_child(parent: np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """The `index`-th child `parent.spawn` makes, without advancing the parent's spawn counter."""
    if index < 0:
        raise ValueError(f"child index must be >= 0, got {index}")
    return np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, index), pool_size=parent.pool_size)


def side_stream(seed: int, purpose: str) -> np.random.SeedSequence:
    """A SeedSequence for one named simulation purpose (e.g. "device-shift"), disjoint from the fleet's tree."""
    if not purpose:
        raise ValueError("a side stream needs a purpose name, e.g. 'device-shift'")
    return np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])


def round_generator(party: np.random.SeedSequence, round_: int) -> np.random.Generator:
    """The Generator a party (the server or one device) uses in round `round_`."""
    return np.random.default_rng(spawned_child(party, round_))


def noise_generator(party: np.random.SeedSequence, round_: int) -> np.random.Generator:
    """A device's seeded DP-noise Generator for round `round_` (insecure runs only), apart from its training's."""
    return np.random.default_rng(spawned_child(spawned_child(party, round_), 0))


def rounding_generator(party: np.random.SeedSequence, round_: int) -> np.random.Generator:
    """A device's Generator for the stochastic rounding of its round-`round_` update (post-processing: it
    protects nothing, so it may follow the device's seed; a deployment's seed is OS entropy anyway)."""
    return np.random.default_rng(spawned_child(spawned_child(party, round_), 1))


@dataclass(frozen=True)
class FleetSeeds:
    """The server's and every device's SeedSequence, all spawned from one root seed."""

    server: np.random.SeedSequence
    devices: tuple[np.random.SeedSequence, ...]

    @classmethod
    def from_seed(cls, seed: int | None, num_devices: int) -> FleetSeeds:
        """Children of SeedSequence(seed): index 0 the server, 1 + i device i (seed None: OS entropy)."""
        root = np.random.SeedSequence(seed)
        return cls(spawned_child(root, 0), tuple(spawned_child(root, 1 + i) for i in range(num_devices)))
