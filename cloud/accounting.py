"""Privacy accounting with dp_accounting (the library TF-Privacy uses); never C/epsilon."""

from __future__ import annotations

from dataclasses import dataclass

import dp_accounting

DEFAULT_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [128, 256, 512]


def round_event(noise_multiplier: float, participation: float) -> dp_accounting.DpEvent:
    """One federated round: each client sampled with probability q, Gaussian noise z."""
    if not 0 < participation <= 1:
        raise ValueError(f"participation rate must be in (0, 1], got {participation}")
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if participation == 1.0:
        return gaussian
    return dp_accounting.PoissonSampledDpEvent(participation, gaussian)


def run_event(noise_multiplier: float, participation: float, rounds: int) -> dp_accounting.DpEvent:
    """All rounds of a run, composed."""
    return dp_accounting.SelfComposedDpEvent(round_event(noise_multiplier, participation), rounds)


def compute_epsilon(noise_multiplier: float, participation: float, rounds: int, delta: float) -> float:
    """Epsilon at delta after `rounds` rounds, by the RDP accountant."""
    if rounds == 0:
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    accountant = dp_accounting.rdp.RdpAccountant(DEFAULT_ORDERS)
    accountant.compose(run_event(noise_multiplier, participation, rounds))
    return float(accountant.get_epsilon(delta))


def calibrate_noise_multiplier(target_epsilon: float, participation: float, rounds: int, delta: float) -> float:
    """Smallest noise multiplier whose run-level epsilon is at most target_epsilon."""
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be positive, got {target_epsilon}")
    return float(dp_accounting.calibrate_dp_mechanism(
        lambda: dp_accounting.rdp.RdpAccountant(DEFAULT_ORDERS),
        lambda z: run_event(z, participation, rounds),
        target_epsilon, delta,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(0.05, 1.0)))


@dataclass
class PrivacyLedger:
    """Rounds spent so far against an epsilon budget; refuses a round that would exceed it."""

    noise_multiplier: float
    participation: float
    delta: float
    max_epsilon: float | None = None
    rounds_spent: int = 0

    @property
    def epsilon(self) -> float:
        return compute_epsilon(self.noise_multiplier, self.participation, self.rounds_spent, self.delta)

    def can_spend_round(self) -> bool:
        """Whether one more round stays within max_epsilon."""
        if self.max_epsilon is None:
            return True
        nxt = compute_epsilon(self.noise_multiplier, self.participation, self.rounds_spent + 1, self.delta)
        return nxt <= self.max_epsilon * (1 + 1e-9)

    def spend_round(self) -> None:
        if not self.can_spend_round():
            raise RuntimeError(f"round {self.rounds_spent + 1} would exceed the privacy budget "
                               f"epsilon={self.max_epsilon} at delta={self.delta}")
        self.rounds_spent += 1
