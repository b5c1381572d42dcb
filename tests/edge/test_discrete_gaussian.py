"""The exact discrete Gaussian sampler: its draws follow the exact pmf, and only a named insecure source is seeded."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import chisquare

from edge.discrete_gaussian import (
    bernoulli_exp,
    discrete_gaussian,
    discrete_gaussian_pmf,
    discrete_laplace,
    insecure_seeded_source,
    secure_source,
)


def _chi_square_p(draws: list[int], pmf_of, support: range) -> float:
    """p-value of the draws against pmf_of(support), the tails beyond `support` pooled into one bin."""
    counts = Counter(draws)
    observed = [counts.get(k, 0) for k in support]
    probs = pmf_of(support)
    observed.append(len(draws) - sum(observed))
    probs.append(1.0 - math.fsum(probs))
    return float(chisquare(observed, np.array(probs) * len(draws)).pvalue)


def test_100k_draws_match_the_exact_pmf_in_mean_variance_and_chi_square() -> None:
    sigma2 = 9
    source = insecure_seeded_source(7)
    draws = [discrete_gaussian(Fraction(sigma2), source) for _ in range(100_000)]
    support = range(-12, 13)
    pmf = discrete_gaussian_pmf(sigma2, range(-60, 61))
    exact_var = math.fsum(p * k * k for p, k in zip(pmf, range(-60, 61)))
    assert abs(np.mean(draws)) < 0.05  # 5 standard errors of the mean
    assert abs(np.var(draws) / exact_var - 1) < 0.05
    assert _chi_square_p(draws, lambda s: discrete_gaussian_pmf(sigma2, s), support) > 1e-3


def test_a_sampler_with_the_wrong_variance_fails_the_same_chi_square() -> None:
    source = insecure_seeded_source(7)
    draws = [discrete_gaussian(Fraction(10), source) for _ in range(20_000)]
    assert _chi_square_p(draws, lambda s: discrete_gaussian_pmf(9, s), range(-12, 13)) < 1e-3


def test_small_and_large_variances_keep_their_variance() -> None:
    source = insecure_seeded_source(3)
    support = range(-30, 31)
    small = math.fsum(p * k * k for p, k in zip(discrete_gaussian_pmf(0.25, support), support))  # 0.215, below 0.25
    for sigma2, exact_var in ((Fraction(1, 4), small), (Fraction(2048 ** 2), 2048.0 ** 2)):  # large: = sigma^2
        draws = np.array([discrete_gaussian(sigma2, source) for _ in range(20_000)], dtype=np.float64)
        assert abs(draws.var() / exact_var - 1) < 0.05


def test_discrete_laplace_matches_its_pmf() -> None:
    source = insecure_seeded_source(11)
    draws = [discrete_laplace(2, source) for _ in range(30_000)]
    norm = (1 - math.exp(-1 / 2)) / (1 + math.exp(-1 / 2))
    assert _chi_square_p(draws, lambda s: [norm * math.exp(-abs(k) / 2) for k in s], range(-10, 11)) > 1e-3


def test_bernoulli_exp_is_exact_at_the_ends_and_close_in_between() -> None:
    source = insecure_seeded_source(5)
    assert all(bernoulli_exp(Fraction(0), source) for _ in range(1000))
    hits = sum(bernoulli_exp(Fraction(3, 2), source) for _ in range(40_000))
    assert abs(hits / 40_000 - math.exp(-1.5)) < 0.01


def test_the_seeded_source_repeats_and_the_secure_one_does_not() -> None:
    def run(source) -> list[int]:
        return [discrete_gaussian(Fraction(100), source) for _ in range(64)]

    assert run(insecure_seeded_source(1)) == run(insecure_seeded_source(1))
    assert run(secure_source()) != run(secure_source())


def test_a_non_positive_variance_is_refused() -> None:
    with pytest.raises(ValueError, match="sigma\\^2 > 0"):
        discrete_gaussian(Fraction(0), secure_source())
