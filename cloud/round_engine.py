"""The federated round, transport-free: `init -> RoundState`, `open_round`, `apply -> (RoundState, RoundRecord)`.

FedJAX's shape with Flower's words. Every path drives this engine: the MQTT aggregator
(cloud/aggregator.py) and the in-process simulations (simulator/in_process.py). A round is

    opened = engine.open_round(state)            # cohort, the inbox that admits updates, the global payload
    opened.inbox.offer(device, round, blob)      # the transport delivers each update blob
    state, record = engine.apply(state, opened)  # aggregate, account, evaluate, record

The engine owns who takes part (every device of the plan, or a Poisson sample of rate
`sampling_rate` drawn from OS entropy; only a sampled round is credited amplification), admission
(`RoundInbox`: cohort, round, shapes, norm, and the declaration against the plan),
aggregation (`cloud.partial_sum.PartialSum`, summed as updates arrive, then `cloud.strategy.finish`),
the privacy ledger (it spends the `DpEvent` the mechanism returns and refuses a round the budget
cannot pay for) and randomness. DP noise comes from the operating system's entropy
(`edge.noise_source.SecureNoise`) unless the config says `insecure_seeded_noise`: then, and for
everything else random, the server's `SeedSequence` lives in the state and round r draws from
its r-th spawned child (`edge.seeding.round_generator`; a central update's grid rounding from a
child keyed by its device, so arrival order does not matter), so a resumed run draws what an
uninterrupted one would.
States are immutable values; `state_to_json`/`state_from_json` carry them through checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import dp_accounting
import numpy as np

from cloud.accounting import PrivacyLedger, event_from_json, event_to_json
from cloud.declared_settings import DeclaredSettings
from cloud.partial_sum import PartialSum, device_rounding_noise
from cloud.rejections import RejectionLog
from cloud.round_inbox import RoundInbox
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, finish, release_event
from edge.model_step import quantised_step
from edge.noise_source import InsecureSeededNoise, NoiseSource, SecureNoise
from edge.seeding import round_generator, spawned_child
from edge.wire import FLOAT32_DELTA, SQ_ENCODINGS, ModelStepMeta, WeightsMeta, encode_model_step, encode_weights

Evaluate = Callable[[dict[str, np.ndarray]], dict[str, float]]
DOWNLINK_STREAM = 3  # child index, under the server's round child, of the model step's stochastic rounding


@dataclass(frozen=True)
class EngineConfig:
    """What the engine enforces for a whole run.

    devices: the fleet's plan; bound_updates: admit only updates within the clip norm (every
    DMSKD mode; off for plain FedAvg of unclipped models); encodings: accepted update encodings;
    sampling_rate: q, each round's cohort is a Poisson sample of the devices at rate q (1: all of
    them, no amplification); declared: per device, what its updates must declare (its plan); a
    device without an entry must declare the aggregation's DP mode, clip and noise."""

    fleet: str
    devices: tuple[str, ...]
    rounds: int
    aggregation: FedAvgConfig = FedAvgConfig()
    delta: float = 1e-5
    max_epsilon: float | None = None
    bound_updates: bool = True
    encodings: tuple[str, ...] = (FLOAT32_DELTA,)
    insecure_seeded_noise: bool = False  # True only in tests and simulations that ask for it by name
    sampling_rate: float = 1.0
    declared: Mapping[str, DeclaredSettings] = field(default_factory=dict)
    model_bits: int = 32  # the global model goes down as a step of this many bits per value (32: whole, float32)

    def __post_init__(self) -> None:
        if self.model_bits != 32 and self.model_bits not in SQ_ENCODINGS:
            raise ValueError(f"model bits must be 32, 8, 4 or 2 (--model-bits), got {self.model_bits}")
        if not 0 < self.sampling_rate <= 1:
            raise ValueError(f"sampling rate q must be in (0, 1], got {self.sampling_rate}")
        unknown = sorted(set(self.declared) - set(self.devices))
        if unknown:
            raise ValueError(f"declared settings for devices not in the plan: {unknown[:5]}")
        if not self.devices:
            raise ValueError("the fleet has no devices; plan at least one device")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError("device ids in the plan must be unique")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")


@dataclass(frozen=True)
class RoundState:
    """Everything a run carries from one round to the next."""

    round: int  # the next round to run
    version: int  # the global student's version (one per completed round)
    weights: dict[str, np.ndarray] = field(repr=False)
    seed: np.random.SeedSequence
    ledger: PrivacyLedger | None = None
    history: tuple[dict, ...] = ()
    step: dict[str, np.ndarray] | None = field(default=None, repr=False)  # wire tensors of version-1 -> version


@dataclass(frozen=True)
class RoundRecord:
    """What one round did: who was accepted, how many were rejected for which reason (with a bounded,
    sanitised sample: `len(rejected)` is the total), epsilon so far, evaluation."""

    round: int
    accepted: tuple[str, ...]
    rejected: RejectionLog
    epsilon: float | None
    metrics: dict[str, float]
    seconds: float
    cohort: tuple[str, ...] = ()  # who was sampled: the operator's record, never published
    closed_by: str = ""  # why the transport closed it (cloud.round_closing.close_reason)
    close_lag_s: float | None = None  # seconds from the last accepted update to the close

    def to_dict(self) -> dict:
        out: dict = {"round": self.round, "cohort": list(self.cohort), "accepted": list(self.accepted),
                     "rejected": self.rejected.to_json(), "seconds": self.seconds}
        if self.closed_by:
            out["closed_by"] = self.closed_by
        if self.close_lag_s is not None:
            out["close_lag_s"] = self.close_lag_s
        if self.epsilon is not None:
            out["epsilon"] = self.epsilon
        return {**out, **self.metrics}


@dataclass
class OpenRound:
    """A round in progress: its cohort, the inbox the transport offers updates to, the model it trains."""

    round: int
    base_version: int
    cohort: tuple[str, ...]
    inbox: RoundInbox
    partial: PartialSum = field(repr=False)  # the accepted updates, summed as they arrive
    model_payload: bytes = field(repr=False)
    step_payload: bytes | None = field(default=None, repr=False)  # the quantised step to this version, if any
    opened_at: float = field(default_factory=time.monotonic)
    closed_by: str = ""  # set by the transport when it closes the round, with closed_at
    closed_at: float | None = None
    last_accepted_at: float | None = None  # monotonic time of the last accepted update


class RoundEngine:
    """Runs rounds of FedAvg over a fleet under one EngineConfig; see the module docstring."""

    def __init__(self, config: EngineConfig, evaluate: Evaluate | None = None) -> None:
        self.config = config
        self.evaluate = evaluate

    def init(self, initial_weights: dict[str, np.ndarray], seed: np.random.SeedSequence) -> RoundState:
        """Round 0 on version 0 of `initial_weights`, with an empty ledger in a DP run."""
        weights = {k: np.asarray(v, np.float32) for k, v in initial_weights.items()}
        return RoundState(0, 0, weights, seed, self._new_ledger())

    def stop_reason(self, state: RoundState) -> str | None:
        """Why no further round may run (schedule done, privacy budget spent), or None."""
        if state.round >= self.config.rounds:
            return f"the schedule of {self.config.rounds} rounds is complete"
        if state.ledger is not None and not state.ledger.allows(self._round_event(state)):
            return (f"round {state.round} would exceed epsilon = {state.ledger.max_epsilon} "
                    f"(spent {state.ledger.epsilon:.3f} at delta = {state.ledger.delta})")
        return None

    def open_round(self, state: RoundState) -> OpenRound:
        """Choose the cohort and open the inbox for round `state.round`."""
        reason = self.stop_reason(state)
        if reason is not None:
            raise RuntimeError(f"cannot open round {state.round}: {reason}")
        cohort = self._cohort(state)
        inbox, partial = self.open_inbox(state, cohort)
        return OpenRound(state.round, state.version, cohort, inbox, partial, self.model_payload(state),
                         self.model_step_payload(state))

    def open_inbox(self, state: RoundState, cohort: tuple[str, ...]) -> tuple[RoundInbox, PartialSum]:
        """The inbox admitting round `state.round`'s updates from `cohort`, folding them into the returned sum:
        what `open_round` opens, and what an aggregator worker (cloud/aggregator_worker.py) opens for the cohort
        its coordinator announced."""
        c = self.config
        declared = {d: c.declared.get(d) or self._default_declaration() for d in cohort}
        dimension = int(sum(w.size for w in state.weights.values()))
        template = {k: tuple(v.shape) for k, v in state.weights.items()}
        partial = PartialSum.empty(template, c.aggregation)
        secure = SecureNoise()

        def fold_in(update: AcceptedUpdate) -> None:
            seeded = c.insecure_seeded_noise
            partial.add(update, device_rounding_noise(state.seed, state.round, update.device) if seeded else secure)

        inbox = RoundInbox(state.round, state.version, c.fleet, frozenset(cohort), template, c.aggregation.dp_mode,
                           c.aggregation.clip if c.bound_updates else None, c.encodings, declared,
                           c.aggregation.noise_multiplier, dimension, sink=fold_in)
        return inbox, partial

    @property
    def sampled(self) -> bool:
        """Whether cohorts are Poisson samples (q < 1), the only case credited with amplification."""
        return self.config.sampling_rate < 1

    @property
    def expected_cohort(self) -> float:
        """q times the fleet: the fixed denominator of the central mean (TF-Privacy's NormalizedQuery)."""
        return self.config.sampling_rate * len(self.config.devices)

    def _cohort(self, state: RoundState) -> tuple[str, ...]:
        """Every device, or each independently with probability q: OS entropy unless seeded by name."""
        devices = tuple(sorted(self.config.devices))
        if not self.sampled:
            return devices
        q = self.config.sampling_rate
        if self.config.insecure_seeded_noise:
            draws = np.random.default_rng(spawned_child(spawned_child(state.seed, state.round), 1)).random(len(devices))
        else:
            system = secrets.SystemRandom()
            draws = np.array([system.random() for _ in devices])
        return tuple(d for d, u in zip(devices, draws, strict=True) if u < q)

    def _default_declaration(self) -> DeclaredSettings:
        agg = self.config.aggregation
        z = agg.noise_multiplier if agg.dp_mode is DpMode.LOCAL else 0.0
        return DeclaredSettings(agg.dp_mode.value, agg.clip if self.config.bound_updates else None, z,
                                self.config.encodings[0])

    def model_payload(self, state: RoundState, round_: int | None = None) -> bytes:
        """The global student as devices receive it, announcing round `round_` (default: the next)."""
        meta = WeightsMeta(self.config.fleet, state.version, state.round if round_ is None else round_)
        return encode_weights(state.weights, meta)

    def model_step_payload(self, state: RoundState, round_: int | None = None) -> bytes | None:
        """The quantised step from the previous version to this one (edge.model_step), or None if the model
        goes down whole (model_bits 32, version 0, or a state resumed from a checkpoint)."""
        if state.step is None:
            return None
        meta = ModelStepMeta(self.config.fleet, state.version, state.round if round_ is None else round_,
                             state.version - 1, SQ_ENCODINGS[self.config.model_bits])
        return encode_model_step(state.step, meta)

    def apply(self, state: RoundState, opened: OpenRound) -> tuple[RoundState, RoundRecord]:
        """Aggregate the round's admitted updates, spend its privacy, evaluate, and close it."""
        if opened.round != state.round or opened.base_version != state.version:
            raise ValueError(f"round {opened.round} on version {opened.base_version} was not opened on this state "
                             f"(round {state.round}, version {state.version})")
        accepted = opened.inbox.accepted
        weights, ledger = state.weights, state.ledger
        if opened.partial.count or self.config.aggregation.dp_mode is DpMode.CENTRAL:
            result = finish(weights, opened.partial, self.config.aggregation, self._noise(state),
                            expected_count=self.expected_cohort)
            weights = result.weights
            if ledger is not None and result.dp_event is not None:
                ledger = ledger.spend(self._sampled(result.dp_event))
        step = None
        if self.config.model_bits < 32:  # the new global model is what devices rebuild from the step (no privacy)
            rng = np.random.default_rng(spawned_child(spawned_child(state.seed, state.round), DOWNLINK_STREAM))
            step, weights = quantised_step(state.weights, weights, self.config.model_bits, rng)
        metrics = self.evaluate(weights) if self.evaluate is not None else {}
        now = time.monotonic()
        lag = None if opened.last_accepted_at is None else (opened.closed_at or now) - opened.last_accepted_at
        record = RoundRecord(state.round, tuple(sorted(accepted)), opened.inbox.rejected.copy(),
                             ledger.epsilon if ledger is not None else None, metrics,
                             now - opened.opened_at, opened.cohort, opened.closed_by, lag)
        new = RoundState(state.round + 1, state.version + 1, weights, state.seed, ledger,
                         (*state.history, record.to_dict()), step)
        return new, record

    def _new_ledger(self) -> PrivacyLedger | None:
        if self.config.aggregation.dp_mode is DpMode.NONE:
            return None
        return PrivacyLedger(self.config.delta, self.config.max_epsilon)

    def _round_event(self, state: RoundState) -> dp_accounting.DpEvent:
        """The event one round releases: the mechanism's, amplified only when the cohort is Poisson-sampled."""
        return self._sampled(release_event(self.config.aggregation, int(sum(w.size for w in state.weights.values()))))

    def _sampled(self, event: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
        """`event` amplified by the Poisson sampling when that holds: in `central` mode with q < 1 (the
        trusted aggregator keeps the sample secret). A round that takes every device, or the first K
        arrivals of all of them, is no random sample; and in `local` mode the aggregator, the party
        local DP protects against, sees who sent: both are accounted with q = 1."""
        return dp_accounting.PoissonSampledDpEvent(self.config.sampling_rate, event) if self.amplified else event

    @property
    def amplified(self) -> bool:
        """Whether the ledger credits amplification by sampling (see `_sampled`)."""
        return self.sampled and self.config.aggregation.dp_mode is DpMode.CENTRAL

    def _noise(self, state: RoundState) -> NoiseSource:
        """OS entropy, unless this run asked for seeded noise by name (then round r's Generator)."""
        if self.config.insecure_seeded_noise:
            return InsecureSeededNoise(round_generator(state.seed, state.round))
        return SecureNoise()


def run_settings(config: EngineConfig) -> dict:
    """What a checkpoint must have been written under to be resumed: everything that shapes a round (the
    number of rounds may grow: extending a schedule resumes; the budget still caps it)."""
    declared = json.dumps({d: asdict(v) for d, v in sorted(config.declared.items())}, sort_keys=True)
    agg = config.aggregation
    return {"fleet": config.fleet, "devices": len(config.devices),
            "device_ids_sha256": hashlib.sha256("\n".join(sorted(config.devices)).encode()).hexdigest(),
            "dp_mode": agg.dp_mode.value, "clip": agg.clip, "noise_multiplier": agg.noise_multiplier,
            "server_lr": agg.server_lr, "float_noise": agg.float_noise, "delta": config.delta,
            "max_epsilon": config.max_epsilon, "bound_updates": config.bound_updates,
            "encodings": list(config.encodings), "sampling_rate": config.sampling_rate,
            "insecure_seeded_noise": config.insecure_seeded_noise, "model_bits": config.model_bits,
            "declared_sha256": hashlib.sha256(declared.encode()).hexdigest()}


def state_to_json(state: RoundState, config: EngineConfig) -> dict:
    """The state without its weights, and the settings it was made under, as JSON (weights go beside it)."""
    return {"settings": run_settings(config), "round": state.round, "version": state.version,
            "seed": {"entropy": state.seed.entropy, "spawn_key": list(state.seed.spawn_key)},
            "privacy_events": None if state.ledger is None else [event_to_json(e) for e in state.ledger.events],
            "history": list(state.history)}


def state_from_json(raw: dict, weights: dict[str, np.ndarray], engine: RoundEngine) -> RoundState:
    """Inverse of state_to_json for `engine`'s config; ValueError names what is missing, wrong, or was
    written under other settings (a run directory reused for another run must not resume its rounds)."""
    stored, current = raw.get("settings"), run_settings(engine.config)
    if stored != current:
        if not isinstance(stored, dict):
            raise ValueError("checkpoint records no run settings (written by an older version); delete the "
                             "checkpoint, or point --checkpoint (the simulator's --run-dir) at a fresh directory")
        diff = ", ".join(f"{k} {stored.get(k)!r} -> {v!r}" for k, v in current.items() if stored.get(k) != v)
        raise ValueError(f"checkpoint was written by a run with other settings ({diff}); resume it with those "
                         f"settings, or point --checkpoint (the simulator's --run-dir) at a fresh directory")
    try:
        seed = np.random.SeedSequence(raw["seed"]["entropy"], spawn_key=tuple(raw["seed"]["spawn_key"]))
        fresh = engine.init(weights, seed)
        events = tuple(event_from_json(e) for e in raw["privacy_events"] or [])
        ledger = None if fresh.ledger is None else replace(fresh.ledger, events=events)
        return replace(fresh, round=int(raw["round"]), version=int(raw["version"]), ledger=ledger,
                       history=tuple(raw["history"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"checkpoint state lacks or garbles {exc}; delete the checkpoint to start over") from exc
