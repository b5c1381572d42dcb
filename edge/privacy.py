"""Clipping and DP noise for student updates (numpy only, randomness injected)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from edge.noise_source import NoiseSource


def global_l2_norm(tensors: dict[str, np.ndarray]) -> float:
    """L2 norm of all tensors taken as one flat vector."""
    return float(np.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors.values())))


def clip_update(delta: dict[str, np.ndarray], clip: float) -> tuple[dict[str, np.ndarray], float]:
    """Scale delta so its global L2 norm is at most clip; return it and the norm before clipping."""
    if clip <= 0:
        raise ValueError(f"clip norm must be positive, got {clip}")
    norm = global_l2_norm(delta)
    scale = min(1.0, clip / max(norm, 1e-12))
    return {k: (v * scale).astype(np.float32) for k, v in delta.items()}, norm


GRID_STEPS = 1000  # the grid's step is C / (GRID_STEPS * sqrt(d)): rounding adds at most 0.1% to the sensitivity


@dataclass(frozen=True)
class DiscreteGaussianMechanism:
    """Clipped records rounded onto the grid gamma * Z^d, plus N_Z(0, (zC/gamma)^2) per coordinate.

    Privacy (Canonne, Kamath and Steinke 2020, Thm. 15): on the grid a record's L2 norm is at most
    Delta = C/gamma + sqrt(d) (randomized rounding moves each coordinate by less than one step), and
    the multivariate discrete Gaussian of scale sigma = zC/gamma gives (eps^2 / 2)-zCDP with
    eps^2 = Delta^2/sigma^2 + 2 tau d, tau = 10 sum_{k=1}^{d-1} exp(-2 pi^2 sigma^2 k/(k+1)). Its
    Renyi divergence of every order alpha is then at most alpha eps^2 / 2, exactly that of a Gaussian
    mechanism of noise multiplier 1/eps: the cloud accounts the release as GaussianDpEvent(1/eps)."""

    clip: float
    noise_multiplier: float
    dimension: int

    def __post_init__(self) -> None:
        if self.clip <= 0 or self.noise_multiplier <= 0 or self.dimension < 1:
            raise ValueError(f"the discrete Gaussian mechanism needs clip > 0, noise multiplier > 0 and a "
                             f"dimension >= 1, got {self.clip}, {self.noise_multiplier}, {self.dimension}")

    @property
    def granularity(self) -> float:
        """gamma, the grid's step."""
        return self.clip / (GRID_STEPS * math.sqrt(self.dimension))

    @property
    def sigma2(self) -> Fraction:
        """The discrete Gaussian's variance parameter on the grid, (zC/gamma)^2, as an exact rational."""
        return Fraction((self.noise_multiplier * self.clip / self.granularity) ** 2)

    @property
    def effective_noise_multiplier(self) -> float:
        """1/eps of the zCDP bound above: the Gaussian noise multiplier with the same Renyi divergences."""
        sigma2 = float(self.sigma2)
        sensitivity = self.clip / self.granularity + math.sqrt(self.dimension)
        head = range(1, min(self.dimension, 64))
        tau = 10 * math.fsum(math.exp(-2 * math.pi ** 2 * sigma2 * k / (k + 1)) for k in head)
        tau += 10 * max(self.dimension - 64, 0) * math.exp(-2 * math.pi ** 2 * sigma2 * 64 / 65)  # k >= 64: below
        return 1.0 / math.sqrt(sensitivity ** 2 / sigma2 + 2 * tau * self.dimension)

    def to_grid(self, record: dict[str, np.ndarray], noise: NoiseSource) -> dict[str, np.ndarray]:
        """A record (already clipped to C) rounded onto the grid, as integers."""
        return {k: noise.randomized_round(np.asarray(v, np.float64) / self.granularity)
                for k, v in sorted(record.items())}

    def noised(self, grid_sum: dict[str, np.ndarray], noise: NoiseSource) -> dict[str, np.ndarray]:
        """The grid sum plus discrete Gaussian noise, back in the records' units (float64)."""
        return {k: (v + noise.discrete_gaussian(self.sigma2, v.size).reshape(v.shape)) * self.granularity
                for k, v in sorted(grid_sum.items())}

    def privatise(self, clipped: dict[str, np.ndarray], noise: NoiseSource) -> dict[str, np.ndarray]:
        """One device's release in `local` mode: its clipped record on the grid plus noise (float32)."""
        return {k: v.astype(np.float32) for k, v in self.noised(self.to_grid(clipped, noise), noise).items()}



RELEASE_NORM_TAIL = 50.0  # t in the tail bound below: an honest release exceeds it with probability e^-50 ~ 2e-22


def local_release_norm_bound(clip: float, noise_multiplier: float, dimension: int) -> float:
    """The largest L2 norm an honest `local`-mode release has, but with probability e^-t (t = 50).

    The clipped record (norm <= C) moved by randomized rounding (less than gamma sqrt(d)), plus noise
    whose coordinates are independent and sigma-subgaussian, sigma = zC (the discrete Gaussian
    N_Z(0, sigma^2) is, CKS 2020); for such a vector ||X||^2 <= sigma^2 (d + 2 sqrt(d t) + 2 t) but with
    probability e^-t (Hsu, Kakade and Zhang 2012, Thm. 1)."""
    mechanism = DiscreteGaussianMechanism(clip, noise_multiplier, dimension)
    sigma, t = noise_multiplier * clip, RELEASE_NORM_TAIL
    noise_bound = sigma * math.sqrt(dimension + 2 * math.sqrt(dimension * t) + 2 * t)
    return clip + mechanism.granularity * math.sqrt(dimension) + noise_bound
