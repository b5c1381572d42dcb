"""An exact sampler of the discrete Gaussian on the integers (Canonne, Kamath and Steinke 2020).

N_Z(0, sigma^2) puts mass proportional to exp(-x^2 / (2 sigma^2)) on every integer x. The sampler
uses only integer and rational arithmetic (`fractions.Fraction`) and uniform integers from its
source, so no floating-point rounding can leak anything about the value: the attacks on
floating-point Laplace and Gaussian samplers do not apply. The source of randomness is any object
with `randrange` (a `random.Random` protocol): `secrets.SystemRandom()` (the operating system's
entropy) is the default and the only one deployments use; `insecure_seeded_source(seed)` exists for
tests and reproducible simulations and says so in its name.

Algorithms 1-3 of the paper: Bernoulli(exp(-gamma)) by von Neumann's method, a discrete Laplace by
a geometric of rate exp(-1/t), then rejection to the Gaussian with t = floor(sigma) + 1.
"""

from __future__ import annotations

import math
import random
import secrets
from fractions import Fraction
from typing import Protocol


class RandomSource(Protocol):
    """Uniform integers: `randrange(n)` is uniform on 0..n-1."""

    def randrange(self, n: int, /) -> int: ...


def secure_source() -> RandomSource:
    """The operating system's entropy (os.urandom through secrets.SystemRandom)."""
    return secrets.SystemRandom()


def insecure_seeded_source(seed: int) -> RandomSource:
    """A reproducible, predictable source: for tests and simulations only, never for a deployment."""
    return random.Random(seed)


def bernoulli(p: Fraction, source: RandomSource) -> bool:
    """True with probability p, for a rational p in [0, 1]."""
    return source.randrange(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, source: RandomSource) -> bool:
    """True with probability exp(-gamma), for a rational gamma >= 0."""
    while gamma > 1:
        if not _bernoulli_exp_at_most_one(Fraction(1), source):
            return False
        gamma -= 1
    return _bernoulli_exp_at_most_one(gamma, source)


def _bernoulli_exp_at_most_one(gamma: Fraction, source: RandomSource) -> bool:
    k = 1
    while bernoulli(gamma / k, source):
        k += 1
    return k % 2 == 1


def _geometric_exp(x: Fraction, source: RandomSource) -> int:
    """A geometric draw: P(k) proportional to exp(-x k), k = 0, 1, ..., for a rational x > 0."""
    s, t = x.numerator, x.denominator
    while True:
        u = source.randrange(t)
        if bernoulli_exp(Fraction(u, t), source):
            break
    v = 0
    while bernoulli_exp(Fraction(1), source):
        v += 1
    return (v * t + u) // s


def discrete_laplace(t: int, source: RandomSource) -> int:
    """P(y) proportional to exp(-|y| / t) on the integers, for an integer t >= 1."""
    while True:
        negative = bernoulli(Fraction(1, 2), source)
        magnitude = _geometric_exp(Fraction(1, t), source)
        if not (negative and magnitude == 0):
            return -magnitude if negative else magnitude


def discrete_gaussian(sigma2: Fraction, source: RandomSource) -> int:
    """One draw of N_Z(0, sigma2), for a rational variance parameter sigma2 > 0."""
    if sigma2 <= 0:
        raise ValueError(f"the discrete Gaussian needs sigma^2 > 0, got {sigma2}")
    t = math.isqrt(sigma2.numerator * sigma2.denominator) // sigma2.denominator + 1  # floor(sigma) + 1
    while True:
        y = discrete_laplace(t, source)
        if bernoulli_exp((abs(y) - sigma2 / t) ** 2 / (2 * sigma2), source):
            return y


def discrete_gaussian_pmf(sigma2: float, support: range) -> list[float]:
    """The exact probabilities of N_Z(0, sigma2) on `support` (normalised over a wide enough range)."""
    half = int(40 * math.sqrt(sigma2)) + 40
    norm = math.fsum(math.exp(-k * k / (2 * sigma2)) for k in range(-half, half + 1))
    return [math.exp(-k * k / (2 * sigma2)) / norm for k in support]
