"""Privacy accounting with dp_accounting (the library TF-Privacy uses); never C/epsilon."""

from __future__ import annotations

from dataclasses import dataclass

import dp_accounting

from edge.privacy import GRID_STEPS

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


def calibrate_discrete_noise_multiplier(target_epsilon: float, participation: float, rounds: int,
                                        delta: float) -> float:
    """The noise multiplier z of edge.privacy.DiscreteGaussianMechanism whose accounted (effective) noise
    multiplier, z / (1 + 1/GRID_STEPS), meets the target epsilon."""
    effective = calibrate_noise_multiplier(target_epsilon, participation, rounds, delta)
    return effective * (1 + 1 / GRID_STEPS) * (1 + 1e-9)


def epsilon_of(events: tuple[dp_accounting.DpEvent, ...], delta: float) -> float:
    """Epsilon at delta of the composition of `events`, by the RDP accountant (runs of equal events grouped)."""
    if not events:
        return 0.0
    groups: list[list] = []
    for e in events:
        if groups and groups[-1][0] == e:
            groups[-1][1] += 1
        else:
            groups.append([e, 1])
    accountant = dp_accounting.rdp.RdpAccountant(DEFAULT_ORDERS)
    accountant.compose(dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(e, n) for e, n in groups]))
    return float(accountant.get_epsilon(delta))


def event_to_json(event: dp_accounting.DpEvent) -> dict:
    """A round's DpEvent as JSON (Gaussian, optionally Poisson-sampled), for checkpoints."""
    if isinstance(event, dp_accounting.PoissonSampledDpEvent):
        return {"poisson_q": float(event.sampling_probability), **event_to_json(event.event)}
    if isinstance(event, dp_accounting.GaussianDpEvent):
        return {"gaussian_z": float(event.noise_multiplier)}
    raise ValueError(f"cannot store privacy event {event!r}; only (Poisson-sampled) Gaussian events are used")


def event_from_json(raw: dict) -> dp_accounting.DpEvent:
    """Inverse of event_to_json."""
    try:
        gaussian = dp_accounting.GaussianDpEvent(float(raw["gaussian_z"]))
        return dp_accounting.PoissonSampledDpEvent(float(raw["poisson_q"]), gaussian) if "poisson_q" in raw \
            else gaussian
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable privacy event {raw!r} in the checkpoint; delete the checkpoint to start over") \
            from exc


@dataclass(frozen=True)
class PrivacyLedger:
    """The privacy events of the rounds released so far against an epsilon budget (None: no limit)."""

    delta: float
    max_epsilon: float | None = None
    events: tuple[dp_accounting.DpEvent, ...] = ()

    @property
    def epsilon(self) -> float:
        return epsilon_of(self.events, self.delta)

    @property
    def rounds_spent(self) -> int:
        return len(self.events)

    def allows(self, event: dp_accounting.DpEvent) -> bool:
        """Whether releasing one more round with `event` stays within max_epsilon."""
        if self.max_epsilon is None:
            return True
        return epsilon_of((*self.events, event), self.delta) <= self.max_epsilon * (1 + 1e-9)

    def spend(self, event: dp_accounting.DpEvent) -> PrivacyLedger:
        """The ledger after one more release; refuses one that would exceed the budget."""
        if not self.allows(event):
            raise RuntimeError(f"round {self.rounds_spent + 1} would exceed the privacy budget "
                               f"epsilon={self.max_epsilon} at delta={self.delta}")
        return PrivacyLedger(self.delta, self.max_epsilon, (*self.events, event))
