"""Where DP noise comes from: the operating system's entropy, or (only when asked for by name) a seed.

Both sources draw the same distributions: N_Z(0, sigma^2) per coordinate and unbiased randomized
rounding to the integers. `SecureNoise` uses the exact sampler of `edge.discrete_gaussian` over
`secrets.SystemRandom` (rational arithmetic, no floating-point leak; about 40 us per coordinate in
pure Python); it rounds exactly too, but vectorised, comparing one 64-bit word of OS entropy per
coordinate with the fraction's 64 leading bits (`randomized_round_exact`). `InsecureSeededNoise`
draws from a numpy Generator with a vectorised rejection sampler (floating point, predictable from
its seed): it exists so that tests and simulations of thousands of devices are reproducible and
fast, and every report of a run that used it says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import numpy as np

from edge.discrete_gaussian import RandomSource, bernoulli, discrete_gaussian, secure_source

EntropySource = Callable[[int], bytes]  # n -> n uniform random bytes, as os.urandom

TWO_64 = 2.0 ** 64
LARGEST_ROUNDABLE = 2.0 ** 63  # |x| below it: floor(|x|) + 1 still fits in an int64


class NoiseSource(Protocol):
    """Discrete Gaussian draws and randomized rounding; `seeded` says whether the draws are predictable."""

    seeded: bool

    def discrete_gaussian(self, sigma2: Fraction, size: int) -> np.ndarray: ...

    def randomized_round(self, x: np.ndarray) -> np.ndarray: ...


class SecureNoise:
    """Exact sampling from the operating system's entropy: what every deployment uses."""

    seeded = False

    def __init__(self, source: RandomSource | None = None, entropy: EntropySource | None = None) -> None:
        self._source = source or secure_source()
        self._entropy = entropy or os.urandom

    def discrete_gaussian(self, sigma2: Fraction, size: int) -> np.ndarray:
        return np.array([discrete_gaussian(sigma2, self._source) for _ in range(size)], dtype=np.int64)

    def randomized_round(self, x: np.ndarray) -> np.ndarray:
        return randomized_round_exact(x, self._entropy, self._source)


def randomized_round_exact(x: np.ndarray, entropy: EntropySource, source: RandomSource) -> np.ndarray:
    """Unbiased randomized rounding of float64 values to int64 with P(round up) exactly the fraction.

    Rounding is symmetric, so |x| is rounded and the sign put back: -(floor(a) + B(f)) with a = |x| takes
    floor(x) = -floor(a) - 1 with probability f and ceil(x) otherwise, the law of rounding x itself; and
    rounding a >= 0 avoids x - floor(x) for a tiny negative x (1 - 2^-60 is no float64). Exactness:
    - f = a - floor(a) is exact: a < 1 gives f = a; a >= 1 gives a/2 <= floor(a) <= a (Sterbenz's lemma).
    - g = f * 2^64 is exact: f = m 2^e (integer m < 2^53) and the product m 2^(e+64) is 0 or between
      2^-1010 and 2^64, a normal float64 (a power of two only moves the exponent).
    - F = floor(g) is exact (floor clears fraction bits) and F <= 2^64 - 2^11 (f <= 1 - 2^-53), so the
      cast to uint64 is exact. g - F is 0 unless f < 2^-12 (from 2^-12 up f's ulp is at least 2^-64).
    With U uniform on 0..2^64-1: U < F -> up, U > F -> down, U == F -> up with probability r = g - F,
    decided by the exact Bernoulli on the rational r. P(up) = F/2^64 + r/2^64 = g/2^64 = f exactly."""
    values = np.asarray(x, np.float64)
    magnitude = np.abs(values.ravel())
    if not np.all(np.isfinite(magnitude)) or (magnitude.size and float(magnitude.max()) >= LARGEST_ROUNDABLE):
        raise ValueError(f"randomized rounding needs finite values of magnitude below 2^63, got "
                         f"{magnitude[~(np.isfinite(magnitude) & (magnitude < LARGEST_ROUNDABLE))][:3]}; "
                         f"clip or rescale the values before rounding them onto the grid")
    low = np.floor(magnitude)
    frac = magnitude - low
    threshold = np.floor(frac * TWO_64).astype(np.uint64)
    raw = entropy(8 * magnitude.size)
    if len(raw) != 8 * magnitude.size:
        raise ValueError(f"the entropy source gave {len(raw)} bytes for {8 * magnitude.size} asked; it must "
                         f"return exactly n bytes, as os.urandom(n) does")
    words = np.frombuffer(raw, dtype="<u8")
    up = words < threshold
    for i in np.flatnonzero(words == threshold):  # probability 2^-64 per coordinate
        residual = Fraction(float(frac[i])) * 2 ** 64 - int(threshold[i])
        up[i] = residual > 0 and bernoulli(residual, source)
    rounded = low.astype(np.int64) + up
    return np.where(values.ravel() < 0, -rounded, rounded).reshape(values.shape)


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
