"""The round engine: cohort, admission, aggregation, the privacy ledger and seeding, without any transport."""

from __future__ import annotations

from dataclasses import replace

import dp_accounting
import numpy as np
import pytest

from cloud.accounting import compute_epsilon
from cloud.partial_sum import PartialSum, device_rounding_noise
from cloud.rejections import RejectionReason
from cloud.round_engine import EngineConfig, RoundEngine, RoundState, state_from_json, state_to_json
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, finish
from edge.model_step import apply_step
from edge.noise_source import InsecureSeededNoise
from edge.privacy import DiscreteGaussianMechanism
from edge.wire import UpdateMeta, decode_model_step, decode_weights, encode_update

DEVICES = ("d2", "d0", "d1")
WEIGHTS = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}
DELTA = 1e-5


def update_blob(device: str, round_: int, version: int, value: float, examples: int = 10, fleet: str = "f",
                dp_mode: str = "none", z: float = 0.0) -> bytes:
    """An update declaring `dp_mode` and own noise `z`: every coordinate `value` (norm sqrt(8) * |value|)."""
    delta = {k: np.full(v.shape, value, np.float32) for k, v in WEIGHTS.items()}
    meta = UpdateMeta(fleet, device, round_, version, examples, 1.0, z, dp_mode)
    return encode_update(delta, meta)


def engine(mode: DpMode = DpMode.NONE, z: float = 0.0, rounds: int = 3, budget: float | None = None,
           seeded_noise: bool = True) -> RoundEngine:
    return RoundEngine(EngineConfig("f", DEVICES, rounds, FedAvgConfig(mode, 1.0, z), DELTA, budget,
                                    insecure_seeded_noise=seeded_noise))


def accounted(z: float, dimension: int = 8) -> float:
    """The noise multiplier the ledger accounts for the discrete Gaussian of z on WEIGHTS' 8 coordinates."""
    return DiscreteGaussianMechanism(1.0, z, dimension).effective_noise_multiplier


def run_round(e: RoundEngine, state: RoundState, values: dict[str, float]):
    """Offer each device's update, declared as the engine's aggregation requires."""
    agg = e.config.aggregation
    z = agg.noise_multiplier if agg.dp_mode is DpMode.LOCAL else 0.0
    opened = e.open_round(state)
    for device, value in values.items():
        blob = update_blob(device, opened.round, opened.base_version, value, dp_mode=agg.dp_mode.value, z=z)
        opened.inbox.offer(device, opened.round, blob)
    return e.apply(state, opened)


def test_every_device_of_the_plan_is_in_the_cohort_in_a_stable_order() -> None:
    e = engine()
    opened = e.open_round(e.init(WEIGHTS, np.random.SeedSequence(0)))
    assert opened.cohort == ("d0", "d1", "d2")
    weights, meta = decode_weights(opened.model_payload)
    assert (meta.version, meta.round) == (0, 0) and all(np.array_equal(weights[k], WEIGHTS[k]) for k in WEIGHTS)


def test_apply_averages_the_admitted_updates_and_records_the_rejected_with_reasons() -> None:
    e = engine()
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    opened = e.open_round(state)
    inbox = opened.inbox
    inbox.offer("d0", 0, update_blob("d0", 0, 0, 0.1, examples=10))
    inbox.offer("d1", 0, update_blob("d1", 0, 0, 0.3, examples=30))
    inbox.offer("intruder", 0, update_blob("intruder", 0, 0, 9.0))
    inbox.offer("d2", 0, update_blob("d2", 0, 0, 0.5)[:50])
    new, record = e.apply(state, opened)
    np.testing.assert_allclose(new.weights["w"], np.full((3, 2), (0.1 * 10 + 0.3 * 30) / 40), rtol=1e-6)
    assert (new.round, new.version) == (1, 1)
    assert record.accepted == ("d0", "d1")
    assert record.rejected.counts == {RejectionReason.NOT_IN_COHORT: 1, RejectionReason.MALFORMED_PAYLOAD: 1}
    details = {r.device: r.detail for r in record.rejected.sample}
    assert "unknown device 'intruder'" in details["intruder"] and "truncated" in details["d2"]
    assert new.history[0]["rejected"]["counts"] == {"not_in_cohort": 1, "malformed_payload": 1}
    assert record.epsilon is None and new.history == (record.to_dict(),)


def test_a_local_round_with_no_valid_update_keeps_the_weights_and_spends_no_privacy() -> None:
    e = engine(DpMode.LOCAL, z=1.0)
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    new, record = run_round(e, state, {})
    assert all(np.array_equal(new.weights[k], WEIGHTS[k]) for k in WEIGHTS)
    assert new.version == 1 and new.ledger.rounds_spent == 0 and record.epsilon == 0.0


def test_a_central_round_with_no_update_still_releases_noise_so_an_empty_round_cannot_be_told_apart() -> None:
    e = engine(DpMode.CENTRAL, z=1.0)
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    new, record = run_round(e, state, {})
    assert any(not np.array_equal(new.weights[k], WEIGHTS[k]) for k in WEIGHTS)
    assert new.ledger.rounds_spent == 1 and record.epsilon > 0


def test_the_ledger_spends_the_event_the_mechanism_returns_each_round() -> None:
    e = engine(DpMode.CENTRAL, z=1.3)
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    epsilons = []
    for _ in range(3):
        state, record = run_round(e, state, {d: 0.1 for d in DEVICES})
        epsilons.append(record.epsilon)
    assert epsilons == [compute_epsilon(accounted(1.3), 1.0, r, DELTA) for r in (1, 2, 3)]
    assert state.ledger.events == (state.ledger.events[0],) * 3


def test_the_engine_stops_before_a_round_the_budget_cannot_pay_for() -> None:
    budget = (compute_epsilon(accounted(2.0), 1.0, 1, DELTA) + compute_epsilon(accounted(2.0), 1.0, 2, DELTA)) / 2
    e = engine(DpMode.LOCAL, z=2.0, rounds=5, budget=budget)
    state, _ = run_round(e, e.init(WEIGHTS, np.random.SeedSequence(0)), {"d0": 0.1})
    assert "would exceed epsilon" in e.stop_reason(state)
    with pytest.raises(RuntimeError, match="cannot open round 1: round 1 would exceed epsilon"):
        e.open_round(state)


def test_the_schedule_ends_after_the_configured_rounds() -> None:
    e = engine(rounds=1)
    state, _ = run_round(e, e.init(WEIGHTS, np.random.SeedSequence(0)), {"d0": 0.1})
    assert "schedule of 1 rounds is complete" in e.stop_reason(state)


def seeded_central_release(state: RoundState, round_: int, updates: list[AcceptedUpdate], e: RoundEngine,
                           noise: InsecureSeededNoise, expected_count: float):
    """What a seeded central round must release: each update rounded by its device's stream, noise from `noise`."""
    partial = PartialSum.empty({k: v.shape for k, v in state.weights.items()}, e.config.aggregation)
    for u in updates:
        partial.add(u, device_rounding_noise(state.seed, round_, u.device))
    return finish(state.weights, partial, e.config.aggregation, noise, expected_count)


def test_a_seeded_central_round_does_not_depend_on_the_order_updates_arrive_in() -> None:
    e = engine(DpMode.CENTRAL, z=0.5)
    results = []
    for order in (sorted(DEVICES), sorted(DEVICES, reverse=True)):
        state = e.init(WEIGHTS, np.random.SeedSequence(3))
        opened = e.open_round(state)
        for d in order:
            assert opened.inbox.offer(d, 0, update_blob(d, 0, 0, 0.1 + 0.01 * int(d[1:]), dp_mode="central"))
        results.append(e.apply(state, opened)[0].weights)
    for k in WEIGHTS:
        assert results[0][k].tobytes() == results[1][k].tobytes()


def test_central_noise_of_round_r_comes_from_the_rth_spawned_child_of_the_server_seed() -> None:
    seed = np.random.SeedSequence(42)
    e = engine(DpMode.CENTRAL, z=0.5)
    state = e.init(WEIGHTS, seed)
    state, _ = run_round(e, state, {d: 0.1 for d in DEVICES})  # round 0
    updates = [AcceptedUpdate(d, {k: np.full(v.shape, 0.2, np.float32) for k, v in WEIGHTS.items()}, 10)
               for d in sorted(DEVICES)]
    noise = InsecureSeededNoise(np.random.default_rng(seed.spawn(2)[1]))
    expected = seeded_central_release(state, 1, updates, e, noise, len(DEVICES))
    got, _ = run_round(e, state, {d: 0.2 for d in DEVICES})  # round 1
    for k in WEIGHTS:
        assert got.weights[k].tobytes() == expected.weights[k].tobytes()


def test_a_run_resumed_from_its_json_state_continues_bit_for_bit() -> None:
    e = engine(DpMode.CENTRAL, z=0.8, rounds=4)
    straight = e.init(WEIGHTS, np.random.SeedSequence(7))
    for r in range(4):
        straight, _ = run_round(e, straight, {d: 0.05 * (r + 1) for d in DEVICES})
    resumed = e.init(WEIGHTS, np.random.SeedSequence(7))
    for r in range(2):
        resumed, _ = run_round(e, resumed, {d: 0.05 * (r + 1) for d in DEVICES})
    resumed = state_from_json(state_to_json(resumed, e.config), resumed.weights, RoundEngine(e.config))
    for r in range(2, 4):
        resumed, _ = run_round(e, resumed, {d: 0.05 * (r + 1) for d in DEVICES})
    for k in WEIGHTS:
        assert resumed.weights[k].tobytes() == straight.weights[k].tobytes()
    assert resumed.ledger.epsilon == straight.ledger.epsilon
    assert [h["accepted"] for h in resumed.history] == [h["accepted"] for h in straight.history]


def test_a_round_applied_on_another_state_is_refused() -> None:
    e = engine()
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    opened = e.open_round(state)
    later, _ = e.apply(state, opened)
    with pytest.raises(ValueError, match="was not opened on this state"):
        e.apply(later, opened)


def test_state_json_missing_a_field_names_the_fix() -> None:
    e = engine()
    raw = state_to_json(e.init(WEIGHTS, np.random.SeedSequence(0)), e.config)
    del raw["seed"]
    with pytest.raises(ValueError, match="delete the checkpoint"):
        state_from_json(raw, WEIGHTS, e)


def test_a_checkpoint_of_a_run_with_other_settings_is_not_resumed() -> None:
    """A run directory reused with another noise multiplier once resumed the old run's finished rounds silently."""
    old = engine(DpMode.CENTRAL, z=2.016)
    raw = state_to_json(old.init(WEIGHTS, np.random.SeedSequence(0)), old.config)
    with pytest.raises(ValueError, match=r"other settings \(noise_multiplier 2.016 -> 2.019\).*fresh directory"):
        state_from_json(raw, WEIGHTS, engine(DpMode.CENTRAL, z=2.019))
    del raw["settings"]
    with pytest.raises(ValueError, match="records no run settings"):
        state_from_json(raw, WEIGHTS, old)


@pytest.mark.parametrize("config, message", [
    (dict(devices=()), "no devices"),
    (dict(devices=("a", "a")), "unique"),
    (dict(rounds=0), "rounds must be at least 1"),
], ids=["empty-fleet", "duplicate-device", "zero-rounds"])
def test_engine_config_refuses_a_fleet_it_cannot_run(config: dict, message: str) -> None:
    base = dict(fleet="f", devices=DEVICES, rounds=1)
    with pytest.raises(ValueError, match=message):
        EngineConfig(**{**base, **config})


def test_without_the_insecure_flag_central_noise_is_fresh_entropy_whatever_the_seed() -> None:
    e = engine(DpMode.CENTRAL, z=0.5, seeded_noise=False)
    runs = [run_round(e, e.init(WEIGHTS, np.random.SeedSequence(7)), {d: 0.1 for d in DEVICES})[0] for _ in range(2)]
    assert not np.array_equal(runs[0].weights["w"], runs[1].weights["w"])
    assert EngineConfig("f", DEVICES, 1).insecure_seeded_noise is False  # the default is the secure one


# --- Poisson sampling of the cohort: amplification only for sampled rounds, a fixed denominator ---

FLEET_200 = tuple(f"m{i:03d}" for i in range(200))


def sampled_engine(q: float, seeded: bool, mode: DpMode = DpMode.CENTRAL) -> RoundEngine:
    return RoundEngine(EngineConfig("f", FLEET_200, 30, FedAvgConfig(mode, 1.0, 1.0), DELTA,
                                    insecure_seeded_noise=seeded, sampling_rate=q))


def test_a_sampled_cohort_is_a_poisson_sample_of_rate_q_drawn_from_os_entropy() -> None:
    e = sampled_engine(0.25, seeded=False)
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    cohorts = [e.open_round(state).cohort for _ in range(30)]
    sizes = np.array([len(c) for c in cohorts])
    # 200 Bernoulli(0.25) per round: mean 50, sd 6.1; over 30 rounds the mean's sd is 1.1
    assert abs(sizes.mean() - 50) < 5 and sizes.std() > 2
    assert len(set(cohorts)) == 30  # the same state, other draws: not a function of public values
    every = sampled_engine(1.0, seeded=False)
    assert every.open_round(every.init(WEIGHTS, np.random.SeedSequence(0))).cohort == tuple(sorted(FLEET_200))


def test_a_seeded_simulation_draws_the_same_cohort_for_the_same_round_and_other_ones_for_others() -> None:
    e = sampled_engine(0.25, seeded=True)
    state = e.init(WEIGHTS, np.random.SeedSequence(7))
    assert e.open_round(state).cohort == e.open_round(state).cohort
    later = replace(state, round=1, version=1)
    assert e.open_round(later).cohort != e.open_round(state).cohort


def test_an_update_from_a_device_outside_the_sampled_cohort_is_rejected() -> None:
    e = sampled_engine(0.25, seeded=True)
    state = e.init(WEIGHTS, np.random.SeedSequence(7))
    opened = e.open_round(state)
    outsider = next(d for d in FLEET_200 if d not in opened.cohort)
    opened.inbox.offer(outsider, 0, update_blob(outsider, 0, 0, 0.1, dp_mode="central"))
    (record,) = opened.inbox.rejected.sample
    assert (record.device, record.reason) == (outsider, RejectionReason.NOT_IN_COHORT)
    assert record.detail.startswith(f"unknown device {outsider!r} for round 0: not in its cohort")


def test_the_ledger_credits_poisson_amplification_only_for_sampled_rounds() -> None:
    for q, wrapped in ((0.25, True), (1.0, False)):
        e = sampled_engine(q, seeded=True)
        state = e.init(WEIGHTS, np.random.SeedSequence(1))
        opened = e.open_round(state)
        for d in opened.cohort:
            opened.inbox.offer(d, 0, update_blob(d, 0, 0, 0.1, dp_mode="central"))
        new, record = e.apply(state, opened)
        (event,) = new.ledger.events
        assert isinstance(event, dp_accounting.PoissonSampledDpEvent) is wrapped
        if wrapped:
            assert event.sampling_probability == 0.25
            assert record.epsilon == pytest.approx(compute_epsilon(accounted(1.0, 8), 0.25, 1, DELTA))
        else:
            assert record.epsilon == pytest.approx(compute_epsilon(accounted(1.0, 8), 1.0, 1, DELTA))


def test_the_central_mean_divides_by_the_expected_cohort_size() -> None:
    e = sampled_engine(0.25, seeded=True)
    assert e.expected_cohort == 50
    state = e.init(WEIGHTS, np.random.SeedSequence(1))
    opened = e.open_round(state)
    senders = opened.cohort[:5]
    for d in senders:
        opened.inbox.offer(d, 0, update_blob(d, 0, 0, 0.1, dp_mode="central"))
    new, _ = e.apply(state, opened)
    updates = [AcceptedUpdate(d, {k: np.full(v.shape, 0.1, np.float32) for k, v in WEIGHTS.items()}, 10)
               for d in senders]
    expected = seeded_central_release(state, 0, updates, e,
                                      InsecureSeededNoise(np.random.default_rng(state.seed.spawn(1)[0])), 50)
    for k in WEIGHTS:
        assert new.weights[k].tobytes() == expected.weights[k].tobytes()


def test_with_8_model_bits_the_new_global_model_is_exactly_what_devices_rebuild_from_the_step() -> None:
    e = RoundEngine(replace(engine().config, model_bits=8))
    state = e.init(WEIGHTS, np.random.SeedSequence(0))
    assert e.model_step_payload(state) is None  # version 0 goes down whole
    new, _ = run_round(e, state, {"d0": 0.1, "d1": 0.3, "d2": -0.2})
    tensors, meta = decode_model_step(e.model_step_payload(new))
    rebuilt = apply_step(state.weights, tensors, 8)
    assert (meta.base_version, meta.version, meta.round) == (0, 1, 1)
    assert all(rebuilt[k].tobytes() == new.weights[k].tobytes() for k in WEIGHTS)
    np.testing.assert_allclose(new.weights["w"], np.full((3, 2), (0.1 + 0.3 - 0.2) / 3), atol=1e-6)


def test_with_32_model_bits_no_step_is_published_and_the_model_is_the_exact_mean() -> None:
    e = engine()
    new, _ = run_round(e, e.init(WEIGHTS, np.random.SeedSequence(0)), {"d0": 0.1, "d1": 0.3, "d2": 0.2})
    assert e.model_step_payload(new) is None
    assert np.allclose(new.weights["w"], 0.2, rtol=1e-6)
