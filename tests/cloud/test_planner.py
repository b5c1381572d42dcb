"""Shard planning: exact per-device optimum under FLOP, arena, flash and op limits; greedy compared."""

from __future__ import annotations

import pytest

from cloud.planner import (
    DeviceProfile,
    NoShardFits,
    ShardCandidate,
    objective,
    plan_device,
    plan_shards,
    plan_shards_greedy,
    violations,
)

OPS = frozenset({"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"})
SHARDS = [
    ShardCandidate("P1", 1, flops_per_sample=1_000, model_bytes=10_000, arena_bytes=4_000, accuracy=0.70,
                   ops=frozenset({"FULLY_CONNECTED", "SOFTMAX"})),
    ShardCandidate("P2", 2, flops_per_sample=5_000, model_bytes=40_000, arena_bytes=16_000, accuracy=0.85, ops=OPS),
    ShardCandidate("P3", 3, flops_per_sample=20_000, model_bytes=2_000_000, arena_bytes=64_000, accuracy=0.90,
                   ops=OPS | {"MEAN"}),
]
BY_ID = {s.shard_id: s for s in SHARDS}


def device(name: str = "d", flops: float = 1e12, samples: int = 100, **limits) -> DeviceProfile:
    return DeviceProfile(name, flops_per_epoch=flops, num_samples=samples, **limits)


def test_exact_plan_picks_the_highest_objective_feasible_shard() -> None:
    # lam = 0.05 per MB: P3 scores 0.90 - 0.10 = 0.80 < P2's 0.85 - 0.002: depth is not everything
    [a] = plan_shards([device()], SHARDS, lam=0.05)
    assert a.shard_id == "P2"
    assert a.objective == pytest.approx(objective(BY_ID["P2"], 0.05))
    assert a.objective == max(objective(s, 0.05) for s in SHARDS)
    assert a.flops_per_epoch == 5_000 * 100
    # without a communication price the deepest, most accurate shard wins
    assert plan_shards([device()], SHARDS, lam=0.0)[0].shard_id == "P3"


def test_tight_flop_budget_forces_a_shallower_shard() -> None:
    assert plan_device(device(flops=5_000 * 100), SHARDS, lam=0.0).shard_id == "P2"   # exactly at budget
    assert plan_device(device(flops=5_000 * 100 - 1), SHARDS, lam=0.0).shard_id == "P1"


def test_flop_budget_is_per_epoch_so_more_samples_need_a_smaller_shard() -> None:
    assert plan_device(device(flops=1e6, samples=10), SHARDS, lam=0.0).shard_id == "P3"
    assert plan_device(device(flops=1e6, samples=100), SHARDS, lam=0.0).shard_id == "P2"


def test_no_shard_fits_names_the_device_budget_cheapest_shard_and_what_it_breaks() -> None:
    tiny = device("meter-42", flops=50_000, samples=100, arena_bytes=1_000, target="tflm")
    with pytest.raises(NoShardFits) as info:
        plan_device(tiny, SHARDS, lam=0.05)
    message = str(info.value)
    for words in ("meter-42", "50,000 FLOPs/epoch", "100 samples", "tflm", "P1",
                  "FLOPs per epoch 100,000 > budget 50,000", "arena 4,000 B > RAM 1,000 B"):
        assert words in message, (words, message)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("limits, expected", [
    ({"arena_bytes": 20_000}, "P2"),
    ({"arena_bytes": 15_999}, "P1"),
    ({"flash_bytes": 1_999_999}, "P2"),
    ({"flash_bytes": 39_999}, "P1"),
    ({"supported_ops": OPS}, "P2"),
    ({"supported_ops": frozenset({"FULLY_CONNECTED", "SOFTMAX"})}, "P1"),
], ids=["arena-excludes-P3", "arena-excludes-P2", "flash-excludes-P3", "flash-excludes-P2",
        "ops-exclude-P3", "ops-exclude-P2"])
def test_memory_and_operator_limits_are_respected(limits: dict, expected: str) -> None:
    chosen = plan_device(device(**limits), SHARDS, lam=0.0)
    assert chosen.shard_id == expected
    assert violations(device(**limits), BY_ID[expected]) == []


def test_violations_lists_every_broken_limit_in_words() -> None:
    d = device(flops=10, arena_bytes=1, flash_bytes=1, supported_ops=frozenset())
    found = violations(d, BY_ID["P3"])
    assert len(found) == 4
    assert any("unsupported ops ['CONV_2D', 'FULLY_CONNECTED', 'MEAN', 'SOFTMAX']" in v for v in found)


def test_duplicate_device_ids_are_rejected_by_both_planners() -> None:
    fleet = [device("twin"), device("other"), device("twin")]
    for planner in (plan_shards, plan_shards_greedy):
        with pytest.raises(ValueError, match="'twin' appears twice"):
            planner(fleet, SHARDS)


def test_planning_without_candidates_is_refused() -> None:
    with pytest.raises(ValueError, match="no shard candidates"):
        plan_device(device(), [], lam=0.05)


def test_device_profile_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="bad: num_samples"):
        DeviceProfile("bad", flops_per_epoch=1.0, num_samples=0)
    with pytest.raises(ValueError, match="bad: flops_per_epoch"):
        DeviceProfile("bad", flops_per_epoch=0.0, num_samples=1)


FLEET = [
    device("rich"),
    device("mid", flops=5_000 * 100),
    device("poor", flops=1_000 * 100),
    device("small-ram", arena_bytes=20_000),
    device("small-flash", flash_bytes=50_000),
    device("no-mean-op", supported_ops=OPS),
]


def test_greedy_picks_the_deepest_shard_that_fits() -> None:
    greedy = {a.device_id: a.shard_id for a in plan_shards_greedy(FLEET, SHARDS, lam=0.05)}
    assert greedy == {"rich": "P3", "mid": "P2", "poor": "P1", "small-ram": "P2", "small-flash": "P2",
                      "no-mean-op": "P2"}


def test_greedy_objective_never_beats_exact_for_any_device() -> None:
    for lam in (0.0, 0.05, 0.5):
        exact = plan_shards(FLEET, SHARDS, lam=lam)
        greedy = plan_shards_greedy(FLEET, SHARDS, lam=lam)
        assert [a.device_id for a in exact] == [a.device_id for a in greedy] == [d.device_id for d in FLEET]
        for e, g in zip(exact, greedy):
            assert g.objective <= e.objective + 1e-12, (lam, e, g)
    # and at lam = 0.05 greedy really loses on the rich device (it pays 2 MB for +5 points)
    rich_exact, rich_greedy = plan_shards(FLEET, SHARDS, 0.05)[0], plan_shards_greedy(FLEET, SHARDS, 0.05)[0]
    assert rich_greedy.objective < rich_exact.objective


def test_greedy_raises_the_same_explanation_when_nothing_fits() -> None:
    with pytest.raises(NoShardFits, match="device stuck"):
        plan_shards_greedy([device("stuck", flops=1.0)], SHARDS)
