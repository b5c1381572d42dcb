"""Clipping equals edge.privacy.clip_update bit for bit; the C discrete Gaussian has the distribution of
N_Z(0, sigma^2) (edge.discrete_gaussian.discrete_gaussian_pmf) and randomized rounding is unbiased; the local
release adds noise of standard deviation z * C per coordinate around the record. Seeded, deterministic, and
with bounds that hold for any seed with overwhelming probability (6 standard errors)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge.discrete_gaussian import discrete_gaussian_pmf
from edge.privacy import DiscreteGaussianMechanism, clip_update

from .core_driver import run

SIZES = {"k": (33, 17), "b": (17,), "s": (1,), "big": (300, 7)}


def vectors(seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in SIZES.items()}


def c_apply(cli: Path, tmp: Path, verb: str, tensors: dict[str, np.ndarray], *extra: str) -> tuple[dict, dict]:
    (tmp / "v.f32").write_bytes(b"".join(t.astype("<f4").tobytes() for t in tensors.values()))
    args = [verb, "--values", str(tmp / "v.f32"), "--out", str(tmp / "o.f32"), *extra]
    for t in tensors.values():
        args += ["--size", str(t.size)]
    result = run(cli, *args)
    assert result.ok, result.out
    flat, out, start = np.frombuffer((tmp / "o.f32").read_bytes(), "<f4"), {}, 0
    for k, t in tensors.items():
        out[k] = flat[start:start + t.size].reshape(t.shape)
        start += t.size
    return result.out, out


@pytest.mark.parametrize("scale,clip", [(0.01, 1.0), (0.3, 1.0), (2.0, 0.5), (1e-7, 1.0)])
def test_clip_matches_edge_privacy_bit_for_bit(core_cli: Path, tmp_path: Path, scale: float, clip: float) -> None:
    tensors = vectors(int(scale * 1000), scale)
    expected, norm = clip_update(tensors, clip)
    out, clipped = c_apply(core_cli, tmp_path, "clip", tensors, "--clip", repr(clip))
    assert out["norm"] == norm
    for k in SIZES:
        assert clipped[k].tobytes() == expected[k].tobytes()


def draws(cli: Path, tmp: Path, *args: str) -> np.ndarray:
    result = run(cli, "noise", *args, "--out", str(tmp / "d.i64"))
    assert result.ok, result.out
    return np.frombuffer((tmp / "d.i64").read_bytes(), "<i8")


@pytest.mark.parametrize("sigma2", [0.25, 4.0, 2500.0, 4.8e9])
def test_discrete_gaussian_moments_match_the_exact_distribution(core_cli: Path, tmp_path: Path,
                                                                sigma2: float) -> None:
    n = 200_000
    x = draws(core_cli, tmp_path, "--sigma2", repr(sigma2), "--count", str(n), "--seed", "7").astype(np.float64)
    half = int(12 * math.sqrt(sigma2)) + 12
    if sigma2 < 1e6:
        support = range(-half, half + 1)
        pmf = np.array(discrete_gaussian_pmf(sigma2, support))
        ks = np.arange(-half, half + 1, dtype=np.float64)
        var = float(np.sum(pmf * ks ** 2))
    else:
        var = sigma2  # the discrete Gaussian's variance is sigma^2 to within e^(-2 pi^2 sigma^2) relatively
    # mean 0 and variance: 6 standard errors (the fourth moment of a Gaussian is 3 var^2)
    assert abs(x.mean()) < 6 * math.sqrt(var / n)
    assert abs(x.var() - var) < 6 * math.sqrt(2 * var ** 2 / n)
    if sigma2 == 4.0:  # and the probabilities themselves, at the centre
        for k in range(-4, 5):
            p = discrete_gaussian_pmf(sigma2, range(k, k + 1))[0]
            assert abs(np.mean(x == k) - p) < 6 * math.sqrt(p * (1 - p) / n), k


def test_the_sampler_is_deterministic_for_a_seed_and_differs_across_seeds(core_cli: Path, tmp_path: Path) -> None:
    a = draws(core_cli, tmp_path, "--sigma2", "9.0", "--count", "1000", "--seed", "1")
    b = draws(core_cli, tmp_path, "--sigma2", "9.0", "--count", "1000", "--seed", "1")
    c = draws(core_cli, tmp_path, "--sigma2", "9.0", "--count", "1000", "--seed", "2")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("x", [2.25, -7.9, 0.001, 12345.5])
def test_randomized_rounding_is_unbiased(core_cli: Path, tmp_path: Path, x: float) -> None:
    n = 100_000
    r = draws(core_cli, tmp_path, "--round", repr(x), "--count", str(n), "--seed", "3")
    assert set(np.unique(r)) <= {math.floor(x), math.ceil(x)}
    f = x - math.floor(x)
    assert abs(r.mean() - x) < 6 * math.sqrt(f * (1 - f) / n) + 1e-12


def test_local_release_is_the_record_plus_noise_of_std_z_clip(core_cli: Path, tmp_path: Path) -> None:
    clip, z = 1.0, 0.5
    record = {"w": np.linspace(-0.02, 0.02, 4000, dtype=np.float32)}
    _, released = c_apply(core_cli, tmp_path, "privatise", record, "--clip", "1.0", "--noise", repr(z), "--seed", "11")
    noise = released["w"].astype(np.float64) - record["w"]
    mech = DiscreteGaussianMechanism(clip, z, 4000)
    grid = released["w"].astype(np.float64) / mech.granularity
    assert np.allclose(grid, np.round(grid), atol=0.02)  # on the grid (up to float32 rounding)
    n = noise.size
    assert abs(noise.mean()) < 6 * z * clip / math.sqrt(n)
    assert abs(noise.std() - z * clip) < 6 * z * clip / math.sqrt(2 * n)
