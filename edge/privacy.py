"""Clipping and Gaussian noise for student updates (numpy only, randomness injected)."""

from __future__ import annotations

import numpy as np


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


def add_gaussian_noise(delta: dict[str, np.ndarray], stddev: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Add N(0, stddev^2) independently to every coordinate (the `local` DP mode)."""
    if stddev < 0:
        raise ValueError(f"noise stddev must be non-negative, got {stddev}")
    return {k: (v + rng.normal(0.0, stddev, size=v.shape)).astype(np.float32) for k, v in sorted(delta.items())}
