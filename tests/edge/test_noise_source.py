"""DP noise sources and the discrete Gaussian mechanism: the same distributions from OS entropy or a named
insecure seed, unbiased rounding onto the grid, and the sensitivity the accounting assumes."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import chisquare

from edge.discrete_gaussian import discrete_gaussian_pmf
from edge.noise_source import InsecureSeededNoise, SecureNoise, discrete_gaussian_numpy
from edge.privacy import GRID_STEPS, DiscreteGaussianMechanism, global_l2_norm


def test_the_vectorised_seeded_sampler_matches_the_exact_pmf_over_100k_draws() -> None:
    draws = discrete_gaussian_numpy(9.0, 100_000, np.random.default_rng(0))
    pmf = discrete_gaussian_pmf(9.0, range(-60, 61))
    exact_var = math.fsum(p * k * k for p, k in zip(pmf, range(-60, 61)))
    assert abs(draws.mean()) < 0.05 and abs(draws.var() / exact_var - 1) < 0.05
    counts = Counter(draws.tolist())
    support = range(-12, 13)
    observed = [counts.get(k, 0) for k in support] + [100_000 - sum(counts.get(k, 0) for k in support)]
    probs = discrete_gaussian_pmf(9.0, support)
    probs.append(1 - math.fsum(probs))
    assert chisquare(observed, np.array(probs) * 100_000).pvalue > 1e-3


@pytest.mark.parametrize("make", [lambda: SecureNoise(), lambda: InsecureSeededNoise(np.random.default_rng(1))],
                         ids=["secure", "seeded"])
def test_randomized_rounding_is_unbiased_and_keeps_integers(make) -> None:
    noise = make()
    x = np.full(20_000, 2.3)
    rounded = noise.randomized_round(x)
    assert set(np.unique(rounded)) == {2, 3}
    assert abs(rounded.mean() - 2.3) < 0.02
    np.testing.assert_array_equal(noise.randomized_round(np.array([-4.0, 0.0, 7.0])), [-4, 0, 7])


def test_only_the_seeded_source_repeats_and_it_says_so() -> None:
    def draw(noise) -> list[int]:
        return noise.discrete_gaussian(Fraction(10_000), 32).tolist()

    assert draw(InsecureSeededNoise(np.random.default_rng(3))) == draw(InsecureSeededNoise(np.random.default_rng(3)))
    assert draw(SecureNoise()) != draw(SecureNoise())
    assert InsecureSeededNoise.seeded and not SecureNoise.seeded


def test_a_clipped_record_on_the_grid_stays_within_the_sensitivity_the_accounting_uses() -> None:
    mech = DiscreteGaussianMechanism(clip=1.0, noise_multiplier=2.0, dimension=400)
    rng = np.random.default_rng(4)
    for _ in range(20):  # records of norm exactly C, with coordinates just below a grid point (worst rounding)
        v = rng.normal(size=400)
        v = v / np.linalg.norm(v)
        grid = mech.to_grid({"w": v}, InsecureSeededNoise(rng))
        assert global_l2_norm({"w": grid["w"].astype(np.float64)}) <= 1.0 / mech.granularity + math.sqrt(400)


def test_the_effective_noise_multiplier_is_the_grid_overhead_below_z() -> None:
    mech = DiscreteGaussianMechanism(clip=1.0, noise_multiplier=2.0, dimension=4810)
    assert mech.effective_noise_multiplier == pytest.approx(2.0 / (1 + 1 / GRID_STEPS), rel=1e-9)
    assert mech.effective_noise_multiplier < 2.0


def test_a_local_release_is_the_clipped_record_plus_noise_of_sd_zc() -> None:
    mech = DiscreteGaussianMechanism(clip=0.5, noise_multiplier=1.5, dimension=20_000)
    record = {"w": np.full(20_000, 0.5 / math.sqrt(20_000), np.float32)}
    out = mech.privatise(record, InsecureSeededNoise(np.random.default_rng(5)))
    noise = out["w"].astype(np.float64) - record["w"]
    assert out["w"].dtype == np.float32
    assert abs(noise.mean()) < 4 * 0.75 / math.sqrt(20_000)
    assert noise.std() == pytest.approx(1.5 * 0.5, rel=0.03)


def test_the_mechanism_refuses_parameters_it_cannot_account() -> None:
    with pytest.raises(ValueError, match="noise multiplier > 0"):
        DiscreteGaussianMechanism(clip=1.0, noise_multiplier=0.0, dimension=10)
