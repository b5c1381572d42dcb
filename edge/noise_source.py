"""Where DP noise comes from: the operating system's entropy, or (only when asked for by name) a seed.

Both sources draw the same distributions: N_Z(0, sigma^2) per coordinate and unbiased randomized
rounding to the integers. `SecureNoise` uses the exact sampler of `edge.discrete_gaussian` over
`secrets.SystemRandom` (rational arithmetic, no floating-point leak; about 40 us per coordinate in
pure Python). `InsecureSeededNoise` draws from a numpy Generator with a vectorised rejection sampler
(floating point, predictable from its seed): it exists so that tests and simulations of thousands
of devices are reproducible and fast, and every report of a run that used it says so.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Protocol

import numpy as np

from edge.discrete_gaussian import RandomSource, bernoulli, discrete_gaussian, secure_source


class NoiseSource(Protocol):
    """Discrete Gaussian draws and randomized rounding; `seeded` says whether the draws are predictable."""

    seeded: bool

    def discrete_gaussian(self, sigma2: Fraction, size: int) -> np.ndarray: ...

    def randomized_round(self, x: np.ndarray) -> np.ndarray: ...


class SecureNoise:
    """Exact sampling from the operating system's entropy: what every deployment uses."""

    seeded = False

    def __init__(self, source: RandomSource | None = None) -> None:
        self._source = source or secure_source()

    def discrete_gaussian(self, sigma2: Fraction, size: int) -> np.ndarray:
        return np.array([discrete_gaussian(sigma2, self._source) for _ in range(size)], dtype=np.int64)

    def randomized_round(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x, np.float64).ravel()
        low = np.floor(flat)
        up = [bernoulli(Fraction(float(f)), self._source) for f in flat - low]  # exact: a float is a rational
        return (low.astype(np.int64) + np.array(up, dtype=np.int64)).reshape(np.shape(x))


class InsecureSeededNoise:
    """Reproducible noise from a numpy Generator: for tests and simulations only, never for a deployment."""

    seeded = True

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    @property
    def generator(self) -> np.random.Generator:
        """The seeded Generator itself (the float-Gaussian comparison of cloud.strategy draws from it)."""
        return self._rng

    def discrete_gaussian(self, sigma2: Fraction, size: int) -> np.ndarray:
        return discrete_gaussian_numpy(float(sigma2), size, self._rng)

    def randomized_round(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        low = np.floor(x)
        return (low + (self._rng.random(x.shape) < x - low)).astype(np.int64)


def discrete_gaussian_numpy(sigma2: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """N_Z(0, sigma2) by the same rejection from a discrete Laplace (t = floor(sigma) + 1), vectorised."""
    if sigma2 <= 0:
        raise ValueError(f"the discrete Gaussian needs sigma^2 > 0, got {sigma2}")
    t = math.floor(math.sqrt(sigma2)) + 1
    p = 1.0 - math.exp(-1.0 / t)
    out = np.empty(0, np.int64)
    while len(out) < size:
        n = 2 * (size - len(out)) + 16
        y = rng.geometric(p, n) - rng.geometric(p, n)  # difference of geometrics: discrete Laplace of scale t
        keep = rng.random(n) < np.exp(-((np.abs(y) - sigma2 / t) ** 2) / (2 * sigma2))
        out = np.concatenate([out, y[keep].astype(np.int64)])
    return out[:size]
