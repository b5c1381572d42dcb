"""Privacy accounting: real dp_accounting numbers, calibration, and a ledger that refuses overspending."""

from __future__ import annotations

import dp_accounting
import pytest

from cloud.accounting import (
    DEFAULT_ORDERS,
    PrivacyLedger,
    calibrate_noise_multiplier,
    compute_epsilon,
    epsilon_of,
    event_from_json,
    event_to_json,
    round_event,
)

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
    z = 2.0
    event = dp_accounting.GaussianDpEvent(z)
    budget = compute_epsilon(z, 1.0, 3, DELTA)
    ledger = PrivacyLedger(delta=DELTA, max_epsilon=budget)
    for _ in range(3):
        assert ledger.allows(event)
        ledger = ledger.spend(event)
    assert ledger.rounds_spent == 3
    assert ledger.epsilon == pytest.approx(budget)
    assert not ledger.allows(event)
    with pytest.raises(RuntimeError, match="round 4 would exceed the privacy budget"):
        ledger.spend(event)
    assert ledger.rounds_spent == 3  # a refused round spends nothing


def test_ledger_without_a_budget_always_allows_a_round() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    assert ledger.epsilon == 0.0
    ledger = ledger.spend(dp_accounting.GaussianDpEvent(0.5))
    assert ledger.allows(dp_accounting.GaussianDpEvent(0.5)) and ledger.rounds_spent == 1


def test_ledger_composes_different_events_as_the_accountant_does() -> None:
    events = (dp_accounting.GaussianDpEvent(2.0), dp_accounting.GaussianDpEvent(2.0),
              dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)))
    accountant = dp_accounting.rdp.RdpAccountant(DEFAULT_ORDERS)
    for e in events:
        accountant.compose(e)
    assert epsilon_of(events, DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-9)
    assert epsilon_of(events[:2], DELTA) == pytest.approx(compute_epsilon(2.0, 1.0, 2, DELTA), rel=1e-9)


@pytest.mark.parametrize("event", [dp_accounting.GaussianDpEvent(1.25),
                                   dp_accounting.PoissonSampledDpEvent(0.2, dp_accounting.GaussianDpEvent(0.7))],
                         ids=["gaussian", "poisson-sampled"])
def test_events_survive_their_json_form(event) -> None:
    assert event_from_json(event_to_json(event)) == event


def test_an_event_the_checkpoint_cannot_store_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cannot store privacy event"):
        event_to_json(dp_accounting.LaplaceDpEvent(1.0))
    with pytest.raises(ValueError, match="delete the checkpoint"):
        event_from_json({"laplace_b": 1.0})
