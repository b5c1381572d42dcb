"""Empirical privacy audits beside the accountant: membership inference and an epsilon lower bound from canaries.

Pure logic, randomness passed in; the driver is simulator/audit_command.py.

(a) Loss-threshold membership inference (Yeom et al. 2018): the attacker scores a sample by minus
the student's cross-entropy on it and calls the low-loss ones members. Reported: ROC AUC
(scikit-learn), precision at low recall (whose chance level is the members' share of the attack
set: 0.5 on the balanced sets the driver builds) and TPR at low FPR (Carlini et al. 2022).

(b) Canary audit of one round's release (Jagielski, Ullman and Oprea 2020; Nasr et al. 2021). In
each trial a coin (the auditor's seeded Generator) decides whether a canary device, whose update is
a fixed random direction of norm C, takes part; the release is made by the real code
(`cloud.strategy.aggregate` in central mode; in local mode the canary device's own upload,
`edge.privacy.DiscreteGaussianMechanism.privatise`, which is what the broker and the aggregator see)
and the attacker computes a score from it. Two attackers:
- `projection`: knows every honest update (the worst case DP covers) and scores the release's
  projection on the canary direction, minus its mean without the canary, in units of C;
- `regenerate-noise`: knows the seed the noise would come from if it were seeded publicly (the
  project's old behaviour), re-runs the same release without the canary on the regenerated noise and
  scores the distance between the two: exactly 0 without the canary when the guess of the noise is right.
From the counts of false positives and negatives at a threshold, Clopper-Pearson bounds (scipy.stats.beta)
give with 95% confidence an epsilon that any (epsilon, delta)-DP mechanism must exceed:
eps >= log((1 - delta - FPR) / FNR) and log((1 - delta - FNR) / FPR); the bound is the largest over
all thresholds (chosen on the same trials, as Jagielski et al. and Nasr et al. do).
Noise origins: `public-seed` (InsecureSeededNoise from the run's seed, the old behaviour),
`secret-seed` (the same vectorised sampler from a `secrets.randbits(128)` seed the attacker never
sees: the stand-in for noise it cannot regenerate, with the same distribution, because the exact
sampler over OS entropy takes ~0.3 s per release of 4,810 coordinates), `os-entropy` (SecureNoise,
what deployments use, for a smaller number of trials).
"""

from __future__ import annotations

import enum
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dp_accounting
import numpy as np
from scipy.stats import beta
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from cloud.accounting import epsilon_of
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, aggregate, release_event
from edge.noise_source import InsecureSeededNoise, NoiseSource, SecureNoise
from edge.privacy import DiscreteGaussianMechanism, clip_update
from edge.seeding import FleetSeeds, noise_generator, round_generator

RECALL_LEVELS = (0.01, 0.05)  # precision of the membership attack at these recalls
FPR_LEVELS = (0.001, 0.01)  # and its true-positive rate at these false-positive rates
CONFIDENCE = 0.95  # of the Clopper-Pearson intervals behind the epsilon lower bound

Weights = dict[str, np.ndarray]


# ---- (a) membership inference ----------------------------------------------------------------------------------

def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of every row of logits against its integer label, in float64.

    Written as (max - z_y) + log1p(sum over the other classes of exp(z_j - max)), so that confidently
    classified samples keep distinct tiny losses instead of all rounding to 0 (ties blind the attack)."""
    z = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    if z.ndim != 2 or labels.shape != (len(z),):
        raise ValueError(f"need logits (n, classes) and n labels, got {z.shape} and {labels.shape}")
    rows = np.arange(len(z))
    top = z.argmax(axis=1)
    shifted = np.exp(z - z[rows, top][:, None])
    shifted[rows, top] = 0.0
    return (z[rows, top] - z[rows, labels]) + np.log1p(shifted.sum(axis=1))


def balanced_indices(members: int, non_members: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of equally many members and non-members: the larger side subsampled (sorted) by rng."""
    n = min(members, non_members)
    if n < 1:
        raise ValueError(f"the membership attack needs members and non-members, got {members} and {non_members}")
    return np.sort(rng.permutation(members)[:n]), np.sort(rng.permutation(non_members)[:n])


@dataclass(frozen=True)
class MembershipResult:
    """How well minus the loss tells members from non-members."""

    auc: float
    precision_at_recall: dict[float, float]  # best precision among thresholds reaching at least that recall
    tpr_at_fpr: dict[float, float]  # best true-positive rate among thresholds with at most that FPR
    members: int
    non_members: int

    @property
    def chance_precision(self) -> float:
        """The precision of guessing at random: the members' share of the attack set."""
        return self.members / (self.members + self.non_members)

    def to_dict(self) -> dict:
        return {"auc": self.auc, "members": self.members, "non_members": self.non_members,
                "chance_precision": self.chance_precision,
                "precision_at_recall": {str(k): v for k, v in self.precision_at_recall.items()},
                "tpr_at_fpr": {str(k): v for k, v in self.tpr_at_fpr.items()}}


def membership_inference(member_losses: np.ndarray, non_member_losses: np.ndarray) -> MembershipResult:
    """The loss-threshold attack (score = -loss, members = 1) scored by sklearn's ROC and precision-recall curves."""
    member_losses, non_member_losses = np.asarray(member_losses), np.asarray(non_member_losses)
    if not len(member_losses) or not len(non_member_losses):
        raise ValueError("the membership attack needs at least one member and one non-member")
    truth = np.concatenate([np.ones(len(member_losses), int), np.zeros(len(non_member_losses), int)])
    score = -np.concatenate([member_losses, non_member_losses])
    precision, recall, _ = precision_recall_curve(truth, score)
    fpr, tpr, _ = roc_curve(truth, score)
    return MembershipResult(
        float(roc_auc_score(truth, score)),
        {r: float(precision[recall >= r].max()) for r in RECALL_LEVELS},
        {f: float(tpr[fpr <= f].max()) for f in FPR_LEVELS},
        len(member_losses), len(non_member_losses))


def attack_roc(member_losses: np.ndarray, non_member_losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the loss-threshold attack, for plotting."""
    truth = np.concatenate([np.ones(len(member_losses), int), np.zeros(len(non_member_losses), int)])
    fpr, tpr, _ = roc_curve(truth, -np.concatenate([member_losses, non_member_losses]))
    return fpr, tpr


# ---- (b) the epsilon lower bound ---------------------------------------------------------------------------------

def clopper_pearson_upper(successes: np.ndarray | int, trials: int, confidence: float = CONFIDENCE) -> np.ndarray:
    """Upper end of the two-sided Clopper-Pearson interval of a binomial rate, successes out of trials."""
    if trials < 1:
        raise ValueError(f"a Clopper-Pearson bound needs at least one trial, got {trials}")
    k = np.asarray(successes, np.float64)
    tail = (1 - confidence) / 2
    safe = np.minimum(k, trials - 1)
    return np.where(k >= trials, 1.0, beta.ppf(1 - tail, safe + 1, trials - safe))


@dataclass(frozen=True)
class EpsilonLowerBound:
    """The best threshold's epsilon lower bound and the counts behind it (guess "canary" when score > threshold)."""

    epsilon: float
    threshold: float
    false_positives: int
    false_negatives: int
    positives: int  # trials with the canary
    negatives: int  # trials without it
    fpr_upper: float
    fnr_upper: float
    delta: float
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epsilon", "threshold", "false_positives", "false_negatives",
                                               "positives", "negatives", "fpr_upper", "fnr_upper", "delta",
                                               "confidence")}


def epsilon_lower_bound(with_canary: np.ndarray, without_canary: np.ndarray, delta: float,
                        confidence: float = CONFIDENCE) -> EpsilonLowerBound:
    """max over thresholds of log((1 - delta - FPR_up) / FNR_up) and log((1 - delta - FNR_up) / FPR_up), at least 0.

    FPR_up, FNR_up: Clopper-Pearson upper bounds of the rates of the test "score > threshold"."""
    pos, neg = np.sort(np.asarray(with_canary, np.float64)), np.sort(np.asarray(without_canary, np.float64))
    if not len(pos) or not len(neg):
        raise ValueError(f"the canary audit needs trials with and without the canary, got {len(pos)} and {len(neg)}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([pos, neg]))])
    false_neg = np.searchsorted(pos, thresholds, side="right")  # canary trials scored at or below the threshold
    false_pos = len(neg) - np.searchsorted(neg, thresholds, side="right")  # canary-free trials scored above it
    fpr_up = clopper_pearson_upper(false_pos, len(neg), confidence)
    fnr_up = clopper_pearson_upper(false_neg, len(pos), confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.where(1 - delta - fpr_up > 0, np.log((1 - delta - fpr_up) / fnr_up), -np.inf)
        other = np.where(1 - delta - fnr_up > 0, np.log((1 - delta - fnr_up) / fpr_up), -np.inf)
    eps = np.maximum(one, other)
    best = int(np.argmax(eps))
    return EpsilonLowerBound(max(0.0, float(eps[best])), float(thresholds[best]), int(false_pos[best]),
                             int(false_neg[best]), len(pos), len(neg), float(fpr_up[best]), float(fnr_up[best]),
                             delta, confidence)


def perfect_separation_bound(positives: int, negatives: int, delta: float, confidence: float = CONFIDENCE) -> float:
    """The largest bound `positives` and `negatives` trials can give (no error at all): the audit's ceiling."""
    if positives < 1 or negatives < 1:
        raise ValueError(f"need trials with and without the canary, got {positives} and {negatives}")
    tail = (1 - confidence) / 2
    fpr_up, fnr_up = 1 - tail ** (1 / negatives), 1 - tail ** (1 / positives)
    best = max(1 - delta - fpr_up, 1e-300) / fnr_up, max(1 - delta - fnr_up, 1e-300) / fpr_up
    return max(0.0, math.log(max(best)))


def trials_to_show(epsilon: float, delta: float, confidence: float = CONFIDENCE) -> int:
    """The fewest trials (half with the canary) whose perfect separation would show a bound above `epsilon`."""
    if not math.isfinite(epsilon):
        raise ValueError("no number of trials shows an infinite epsilon")
    half = 1
    while perfect_separation_bound(half, half, delta, confidence) <= epsilon:
        half *= 2
    low = half // 2
    while half - low > 1:  # the bound grows with the trials: bisect between low (too few) and half (enough)
        mid = (low + half) // 2
        low, half = (low, mid) if perfect_separation_bound(mid, mid, delta, confidence) > epsilon else (mid, half)
    return 2 * half


def release_epsilons(config: FedAvgConfig, dimension: int, delta: float) -> tuple[float, float]:
    """Epsilon of one release of `config` at delta: the RDP accountant's (what the project reports) and the
    tight value of the same Gaussian event by the PLD accountant (what a perfect audit could approach)."""
    if config.dp_mode is DpMode.NONE:
        return math.inf, math.inf
    event = release_event(config, dimension)
    pld = dp_accounting.pld.PLDAccountant()
    pld.compose(event)
    return epsilon_of((event,), delta), float(pld.get_epsilon(delta))


# ---- (b) the canary trials ---------------------------------------------------------------------------------------

class NoiseOrigin(enum.StrEnum):
    """Where a trial's DP noise comes from, and so whether the attacker can regenerate it."""

    PUBLIC_SEED = "public-seed"  # InsecureSeededNoise from the run's seed: the old behaviour, regenerable
    SECRET_SEED = "secret-seed"  # the same sampler from secrets.randbits(128): same distribution, not regenerable
    OS_ENTROPY = "os-entropy"  # SecureNoise: the exact sampler over OS entropy, what deployments use
    NONE = "no-noise"  # DP off: nothing to regenerate


ATTACKERS = ("projection", "regenerate-noise")


@dataclass(frozen=True)
class CanarySetup:
    """One round as the accountant models it: the global student, the honest updates and the canary.

    The fleet is the honest devices plus the canary device (index len(honest)), all taking part
    (q = 1), so the central mean's fixed denominator is len(honest) + 1 with or without the canary;
    `public_seed` is the seed a publicly seeded run would draw its noise from."""

    config: FedAvgConfig
    global_weights: Weights = field(repr=False)
    honest: tuple[AcceptedUpdate, ...] = field(repr=False)
    canary: Weights = field(repr=False)
    public_seed: int = 0

    def __post_init__(self) -> None:
        if set(self.canary) != set(self.global_weights):
            raise ValueError("the canary must have the global student's tensors")
        if not self.honest and self.config.dp_mode is not DpMode.CENTRAL:
            raise ValueError("a canary audit without DP noise or in local mode needs at least one honest update")

    @property
    def dimension(self) -> int:
        return int(sum(v.size for v in self.global_weights.values()))

    @property
    def expected_count(self) -> float:
        return float(len(self.honest) + 1)

    @property
    def direction(self) -> np.ndarray:
        """The canary's unit direction, flattened in sorted tensor order."""
        flat = _flat(self.canary)
        return flat / np.linalg.norm(flat)


def canary_update(template: Weights, clip: float, rng: np.random.Generator) -> Weights:
    """A random direction of L2 norm `clip` shaped like `template` (float32)."""
    raw = {k: rng.standard_normal(np.shape(v)) for k, v in sorted(template.items())}
    norm = math.sqrt(sum(float(np.sum(v ** 2)) for v in raw.values()))
    return {k: (v * (clip / norm)).astype(np.float32) for k, v in raw.items()}


def _flat(tensors: Weights) -> np.ndarray:
    return np.concatenate([np.asarray(tensors[k], np.float64).ravel() for k in sorted(tensors)])


def released(setup: CanarySetup, with_canary: bool, noise: NoiseSource | None) -> np.ndarray:
    """What the attacker observes, flattened: the round's released delta (central, none) or the canary
    device's upload (local: its update C*u with the canary, a zero update without)."""
    cfg = setup.config
    if cfg.dp_mode is DpMode.LOCAL:
        if noise is None:
            raise ValueError("a local-mode release needs a noise source")
        record = setup.canary if with_canary else {k: np.zeros_like(v) for k, v in setup.canary.items()}
        mechanism = DiscreteGaussianMechanism(cfg.clip, cfg.noise_multiplier, setup.dimension)
        return _flat(mechanism.privatise(clip_update(record, cfg.clip)[0], noise))
    canary_examples = max(1, int(np.median([u.num_examples for u in setup.honest]))) if setup.honest else 1
    updates = [*setup.honest, *([AcceptedUpdate("canary", setup.canary, canary_examples)] if with_canary else [])]
    result = aggregate(global_weights=setup.global_weights, updates=updates, config=cfg, noise=noise,
                       expected_count=setup.expected_count)
    return _flat(result.weights) - _flat(setup.global_weights)


def projection_scale(setup: CanarySetup) -> tuple[float, float]:
    """(mean without the canary, gain) of the release's projection on the canary direction, both known to the
    auditor: score = (projection - mean) / gain is about 1 with the canary and 0 without, plus the noise."""
    cfg, u = setup.config, setup.direction
    if cfg.dp_mode is DpMode.LOCAL:
        return 0.0, cfg.clip
    if cfg.dp_mode is DpMode.CENTRAL:
        honest_sum = sum((_flat(clip_update(h.delta, cfg.clip)[0]) for h in setup.honest), np.zeros(len(u)))
        per_update = cfg.server_lr / setup.expected_count
        return per_update * float(honest_sum @ u), per_update * cfg.clip
    without = float(released(setup, False, None) @ u)
    return without, float(released(setup, True, None) @ u) - without


def noise_for(setup: CanarySetup, origin: NoiseOrigin, trial: int, secret_seed: int) -> NoiseSource | None:
    """Trial `trial`'s noise: round `trial` of the server's (central) or the canary device's (local) seeded
    stream, exactly as the round engine and StudentClient draw it with --insecure-seeded-noise, from the
    public seed or a secret one; or SecureNoise; or none when DP is off."""
    if origin is NoiseOrigin.NONE:
        return None
    if origin is NoiseOrigin.OS_ENTROPY:
        return SecureNoise()
    seed = setup.public_seed if origin is NoiseOrigin.PUBLIC_SEED else secret_seed
    seeds = FleetSeeds.from_seed(seed, len(setup.honest) + 1)
    if setup.config.dp_mode is DpMode.LOCAL:
        return InsecureSeededNoise(noise_generator(seeds.devices[len(setup.honest)], trial))
    return InsecureSeededNoise(round_generator(seeds.server, trial))


@dataclass(frozen=True)
class CanaryAudit:
    """One (mode, noise origin, attacker) audit: the lower bound beside the accountant's epsilon of the release."""

    dp_mode: str
    noise: str
    attacker: str
    trials: int
    bound: EpsilonLowerBound
    accountant_epsilon: float  # RDP, one release of the event the mechanism returns
    tight_epsilon: float  # PLD of the same event
    noise_multiplier: float
    seconds: float
    scores_with: np.ndarray = field(repr=False)
    scores_without: np.ndarray = field(repr=False)

    @property
    def ceiling(self) -> float:
        """The bound these trials would give at perfect separation."""
        return perfect_separation_bound(self.bound.positives, self.bound.negatives, self.bound.delta,
                                        self.bound.confidence)

    def to_dict(self) -> dict:
        return {"dp_mode": self.dp_mode, "noise": self.noise, "attacker": self.attacker, "trials": self.trials,
                "epsilon_lower_bound": self.bound.epsilon, "bound": self.bound.to_dict(),
                "bound_ceiling_of_these_trials": self.ceiling,
                "accountant_epsilon": _finite_or_none(self.accountant_epsilon),
                "tight_epsilon_pld": _finite_or_none(self.tight_epsilon), "noise_multiplier": self.noise_multiplier,
                "seconds": self.seconds}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an unbounded epsilon (DP off) is written as null."""
    return value if math.isfinite(value) else None


def run_canary_audit(setup: CanarySetup, origin: NoiseOrigin, trials: int, coins: np.random.Generator,
                     delta: float, secret_seed: int | None = None,
                     on_trial: Callable[[], None] | None = None) -> list[CanaryAudit]:
    """`trials` releases, the canary in each with probability 1/2 (coins), scored by both attackers.

    The regenerating attacker assumes the public seed: it re-runs the release without the canary on
    noise_for(PUBLIC_SEED) and scores the L2 distance (in units of C) from what was released."""
    if trials < 2:
        raise ValueError(f"a canary audit needs at least 2 trials, got {trials}")
    if (origin is NoiseOrigin.NONE) != (setup.config.dp_mode is DpMode.NONE):
        raise ValueError(f"noise origin {origin.value} does not fit DP mode {setup.config.dp_mode.value}")
    secret = secrets.randbits(128) if secret_seed is None else secret_seed
    started = time.monotonic()
    inserted = coins.random(trials) < 0.5
    u = setup.direction
    mean, gain = projection_scale(setup)
    clip = setup.config.clip
    scores = {a: np.empty(trials) for a in ATTACKERS}
    guessed = NoiseOrigin.NONE if origin is NoiseOrigin.NONE else NoiseOrigin.PUBLIC_SEED  # the attacker's guess
    for t in range(trials):
        out = released(setup, bool(inserted[t]), noise_for(setup, origin, t, secret))
        scores["projection"][t] = (float(out @ u) - mean) / gain
        guess = released(setup, False, noise_for(setup, guessed, t, secret))
        scores["regenerate-noise"][t] = float(np.linalg.norm(out - guess)) / clip
        if on_trial is not None:
            on_trial()
    accountant, tight = release_epsilons(setup.config, setup.dimension, delta)
    seconds = time.monotonic() - started
    z = setup.config.noise_multiplier if setup.config.dp_mode is not DpMode.NONE else 0.0
    return [CanaryAudit(setup.config.dp_mode.value, origin.value, a, trials,
                        epsilon_lower_bound(s[inserted], s[~inserted], delta), accountant, tight, z, seconds,
                        s[inserted], s[~inserted]) for a, s in scores.items()]
