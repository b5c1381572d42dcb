"""Privacy accounting: real dp_accounting numbers, calibration, and a ledger that refuses overspending."""

from __future__ import annotations

import pytest

from cloud.accounting import PrivacyLedger, calibrate_noise_multiplier, compute_epsilon, round_event

DELTA = 1e-5


@pytest.mark.parametrize("z, expected", [(0.667, 24.0), (3.0, 2.3)], ids=["paper-sigma-C/1.5", "z=3"])
def test_compute_epsilon_reproduces_the_design_facts(z: float, expected: float) -> None:
    """DESIGN.md §3: 50 rounds, q = 0.2, delta = 1e-5."""
    assert compute_epsilon(z, 0.2, 50, DELTA) == pytest.approx(expected, rel=0.05)


def test_epsilon_decreases_as_the_noise_multiplier_grows() -> None:
    eps = [compute_epsilon(z, 0.2, 50, DELTA) for z in (0.8, 1.5, 3.0)]
    assert eps[0] > eps[1] > eps[2] > 0


def test_epsilon_increases_with_rounds() -> None:
    eps = [compute_epsilon(1.0, 0.2, r, DELTA) for r in (1, 10, 100)]
    assert 0 < eps[0] < eps[1] < eps[2]


def test_epsilon_edge_cases_zero_rounds_and_no_noise() -> None:
    assert compute_epsilon(1.0, 0.2, 0, DELTA) == 0.0
    assert compute_epsilon(0.0, 0.2, 10, DELTA) == float("inf")


def test_full_participation_is_a_plain_gaussian_event_and_bad_rates_are_refused() -> None:
    assert type(round_event(1.0, 1.0)).__name__ == "GaussianDpEvent"
    assert type(round_event(1.0, 0.1)).__name__ == "PoissonSampledDpEvent"
    for q in (0.0, 1.5):
        with pytest.raises(ValueError, match="participation rate"):
            round_event(1.0, q)


def test_calibrated_noise_multiplier_meets_the_target_epsilon_closely() -> None:
    target = 5.0
    z = calibrate_noise_multiplier(target, 0.2, 50, DELTA)
    eps = compute_epsilon(z, 0.2, 50, DELTA)
    assert eps <= target
    assert eps == pytest.approx(target, rel=0.01)
    assert 0.667 < z < 3.0  # between the two design points (eps 24 and 2.3)


def test_calibration_refuses_a_non_positive_target() -> None:
    with pytest.raises(ValueError, match="target epsilon must be positive"):
        calibrate_noise_multiplier(0.0, 0.2, 50, DELTA)


def test_ledger_spends_rounds_up_to_the_budget_then_refuses() -> None:
    z, q = 2.0, 1.0
    budget = compute_epsilon(z, q, 3, DELTA)
    ledger = PrivacyLedger(noise_multiplier=z, participation=q, delta=DELTA, max_epsilon=budget)
    for _ in range(3):
        assert ledger.can_spend_round()
        ledger.spend_round()
    assert ledger.rounds_spent == 3
    assert ledger.epsilon == pytest.approx(budget)
    assert not ledger.can_spend_round()
    with pytest.raises(RuntimeError, match="round 4 would exceed the privacy budget"):
        ledger.spend_round()
    assert ledger.rounds_spent == 3  # a refused round spends nothing


def test_ledger_without_a_budget_always_allows_a_round() -> None:
    ledger = PrivacyLedger(noise_multiplier=0.5, participation=1.0, delta=DELTA)
    assert ledger.epsilon == 0.0
    ledger.spend_round()
    assert ledger.can_spend_round() and ledger.rounds_spent == 1
