"""Clipping bounds the global L2 norm; Gaussian noise has the configured spread and is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from edge.noise_source import InsecureSeededNoise
from edge.privacy import DiscreteGaussianMechanism, clip_update, global_l2_norm


def _delta(scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": (rng.standard_normal((30, 20)) * scale).astype(np.float32),
            "b": (rng.standard_normal(17) * scale).astype(np.float32)}


def test_global_norm_treats_all_tensors_as_one_vector() -> None:
    delta = {"a": np.array([3.0], np.float32), "b": np.array([[4.0]], np.float32)}
    assert global_l2_norm(delta) == pytest.approx(5.0)


def test_clip_scales_an_update_above_the_clip_to_exactly_the_clip_norm() -> None:
    delta = _delta(scale=1.0)
    before = global_l2_norm(delta)
    assert before > 10
    clipped, reported = clip_update(delta, clip=1.5)
    assert reported == pytest.approx(before)
    assert global_l2_norm(clipped) == pytest.approx(1.5, rel=1e-6)
    for name in delta:  # direction preserved: a pure rescale
        np.testing.assert_allclose(clipped[name], delta[name] * (1.5 / before), rtol=1e-6)
        assert clipped[name].dtype == np.float32


def test_clip_leaves_an_update_below_the_clip_bit_for_bit_unchanged() -> None:
    delta = _delta(scale=0.01)
    assert global_l2_norm(delta) < 1.0
    clipped, reported = clip_update(delta, clip=1.0)
    assert reported == pytest.approx(global_l2_norm(delta))
    for name in delta:
        assert clipped[name].tobytes() == delta[name].tobytes()


def test_clip_refuses_non_positive_clip() -> None:
    with pytest.raises(ValueError, match="clip norm must be positive"):
        clip_update(_delta(1.0), clip=0.0)


def _privatise(delta: dict[str, np.ndarray], z: float, clip: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = int(sum(v.size for v in delta.values()))
    return DiscreteGaussianMechanism(clip, z, d).privatise(delta, InsecureSeededNoise(rng))


def test_local_noise_has_sd_zc_zero_mean_and_independent_coordinates() -> None:
    zeros = {"a": np.zeros((200, 250), np.float32), "b": np.zeros(10_000, np.float32)}
    noised = _privatise(zeros, z=0.74, clip=0.5, rng=np.random.default_rng(1234))
    values = np.concatenate([v.ravel() for v in noised.values()]).astype(np.float64)
    assert values.size == 60_000
    # std of the sample std is stddev/sqrt(2n) ~ 0.3 %; of the mean, stddev/sqrt(n) ~ 0.0015
    assert np.std(values) == pytest.approx(0.37, rel=0.02)
    assert abs(np.mean(values)) < 5 * 0.37 / np.sqrt(values.size)
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.02
    assert all(v.dtype == np.float32 for v in noised.values())


def test_noise_is_added_to_the_update_not_replacing_it() -> None:
    delta, _ = clip_update(_delta(scale=5.0), clip=1.0)
    noised = _privatise(delta, z=0.1, clip=1.0, rng=np.random.default_rng(3))
    resid = np.concatenate([(noised[k].astype(np.float64) - delta[k]).ravel() for k in delta])
    assert np.std(resid) == pytest.approx(0.1, rel=0.1)


def test_same_seed_gives_same_noise_and_different_seed_different_noise() -> None:
    delta, _ = clip_update(_delta(scale=1.0), clip=1.0)
    a = _privatise(delta, 0.5, 1.0, np.random.default_rng(42))
    b = _privatise(delta, 0.5, 1.0, np.random.default_rng(42))
    c = _privatise(delta, 0.5, 1.0, np.random.default_rng(43))
    for name in delta:
        assert a[name].tobytes() == b[name].tobytes()
        assert not np.array_equal(a[name], c[name])
