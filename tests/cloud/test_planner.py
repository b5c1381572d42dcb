"""Shard planning: exact per-device optimum under FLOP, arena, flash and op limits; greedy compared."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cloud.bench_planner import random_fleet, random_teacher
from cloud.planner import (
    DEFAULT_LINK_KBPS,
    DeviceProfile,
    NoShardFits,
    ShardCandidate,
    comm_seconds,
    objective,
    plan_device,
    plan_shards,
    plan_shards_greedy,
    total_objective,
    violations,
)
from export.op_support import EDGETPU_OPS, TFLM_OPS

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
    tiny = device("meter-42", flops=50_000, samples=100, arena_bytes=1_000, target="mcu")
    with pytest.raises(NoShardFits) as info:
        plan_device(tiny, SHARDS, lam=0.05)
    message = str(info.value)
    for words in ("meter-42", "50,000 FLOPs/epoch", "100 samples", "mcu", "P1",
                  "FLOPs per epoch 100,000 > budget 50,000", "arena 4,000 B > RAM 1,000 B",
                  # what limit values would make the cheapest shard fit
                  "It would fit with flops_per_epoch >= 100,000 (flops_per_sample >= 1,000, or at most 50 samples)",
                  "arena >= 4,000 B (arena_kb >= 4)"):
        assert words in message, (words, message)


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


# -- targets and operator support (export/op_support) --

MATMUL = ShardCandidate("P4", 4, flops_per_sample=30_000, model_bytes=60_000, arena_bytes=20_000, accuracy=0.99,
                        ops=OPS | {"BATCH_MATMUL"})


def test_a_device_target_brings_its_operator_set() -> None:
    assert device(target="mcu").supported_ops == TFLM_OPS
    assert device(target="edgetpu").supported_ops == EDGETPU_OPS
    assert device(target="linux").supported_ops is None
    assert device(target="edgetpu", supported_ops=OPS).supported_ops == OPS  # an explicit set wins


@pytest.mark.parametrize("target, expected", [("linux", "P4"), ("mcu", "P4"), ("edgetpu", "P3")])
def test_a_shard_whose_ops_the_target_lacks_is_never_planned(target: str, expected: str) -> None:
    # BATCH_MATMUL runs in LiteRT and TFLite-Micro, not on the Edge TPU
    shards = SHARDS + [MATMUL]
    for planner in (plan_shards, plan_shards_greedy):
        [a] = planner([device(target=target)], shards, lam=0.0)
        assert a.shard_id == expected and a.target == target
    assert any("unsupported ops ['BATCH_MATMUL'] on target edgetpu" in v
               for v in violations(device(target="edgetpu"), MATMUL))


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match="target 'tflm' is not one of linux, edgetpu, mcu"):
        device(target="tflm")


def test_no_runnable_shard_names_the_missing_operators_and_target() -> None:
    with pytest.raises(NoShardFits) as info:
        plan_device(device("coral-7", target="edgetpu"), [MATMUL], lam=0.05)
    assert "coral-7" in str(info.value) and "target edgetpu runs none of them" in str(info.value)
    assert "['BATCH_MATMUL']" in str(info.value)


def test_the_cheapest_shard_named_is_one_the_target_can_run() -> None:
    cheap_but_matmul = ShardCandidate("P0", 0, 10, 100, 100, 0.5, frozenset({"BATCH_MATMUL"}))
    with pytest.raises(NoShardFits) as info:
        plan_device(device("coral-8", flops=10, target="edgetpu"), [cheap_but_matmul] + SHARDS, lam=0.05)
    assert "the cheapest shard it could run, P1" in str(info.value)
    assert "flops_per_epoch >= 100,000" in str(info.value)


def test_the_error_for_flash_names_the_value_that_would_fit() -> None:
    with pytest.raises(NoShardFits, match=r"flash >= 10,000 B \(flash_kb >= 10\)"):
        plan_device(device("m", flash_bytes=5_000), SHARDS, lam=0.05)


# -- communication: download seconds over the device's link --


def test_comm_is_download_seconds_and_megabytes_at_the_default_link() -> None:
    p2 = BY_ID["P2"]
    assert DEFAULT_LINK_KBPS == 8_000
    assert comm_seconds(p2) == pytest.approx(40_000 / 1e6)  # 1 MB/s: seconds = megabytes
    assert comm_seconds(p2, device(uplink_kbps=20)) == pytest.approx(40_000 * 8 / 20_000)
    assert comm_seconds(p2, device(uplink_kbps=20, downlink_kbps=80)) == pytest.approx(40_000 * 8 / 80_000)
    assert objective(p2, 0.05, device(uplink_kbps=20)) == pytest.approx(0.85 - 0.05 * 16)


def test_a_slow_link_makes_the_exact_plan_choose_a_smaller_shard() -> None:
    fast, slow = device("fast", uplink_kbps=100_000), device("slow", uplink_kbps=20)
    plan = {a.device_id: a for a in plan_shards([fast, slow], SHARDS, lam=0.05)}
    assert plan["fast"].shard_id == "P3" and plan["slow"].shard_id == "P1"
    assert plan["slow"].comm_seconds == pytest.approx(10_000 * 8 / 20_000)


# -- a cap on distinct shards: the one coupling constraint, solved exactly --


def _brute_force(devices, shards, lam, cap) -> float:
    """Best total objective over every assignment using at most cap distinct shards (feasible only)."""
    best = -np.inf
    for choice in itertools.product(shards, repeat=len(devices)):
        if len({s.shard_id for s in choice}) > cap or any(violations(d, s) for d, s in zip(devices, choice)):
            continue
        best = max(best, sum(objective(s, lam, d) for d, s in zip(devices, choice)))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cap", [1, 2])
def test_capped_exact_plan_matches_brute_force_and_beats_greedy(seed: int, cap: int) -> None:
    rng = np.random.default_rng(seed)
    shards = random_teacher(rng, exits=4)
    devices = random_fleet(rng, shards, n=6)
    brute = _brute_force(devices, shards, 0.01, cap)
    assert np.isfinite(brute)  # random_fleet: the cheapest shard fits every device, so any cap is feasible
    exact = plan_shards(devices, shards, 0.01, max_shards=cap)
    assert len({a.shard_id for a in exact}) <= cap
    assert total_objective(exact) == pytest.approx(brute)
    try:
        greedy = plan_shards_greedy(devices, shards, 0.01, max_shards=cap)
    except NoShardFits:
        return  # the heuristic may fail to find a cover that exists
    assert len({a.shard_id for a in greedy}) <= cap
    assert total_objective(greedy) <= total_objective(exact) + 1e-9


def test_an_impossible_cap_names_the_smallest_cap_that_works() -> None:
    p1_mean = ShardCandidate("P1", 1, 1_000, 10_000, 4_000, 0.70, frozenset({"MEAN"}))
    shards = [p1_mean, BY_ID["P2"], BY_ID["P3"]]
    tiny = device("tiny", flops=1_000 * 100)  # its budget fits P1 only
    no_mean = device("no-mean", supported_ops=OPS)  # P1 and P3 use MEAN: P2 only
    for planner in (plan_shards, plan_shards_greedy):
        with pytest.raises(NoShardFits, match=r"the fleet's limits need at least 2.*raise max_shards to 2"):
            planner([tiny, no_mean], shards, 0.0, max_shards=1)
        assert [a.shard_id for a in planner([tiny, no_mean], shards, 0.0, max_shards=2)] == ["P1", "P2"]
    with pytest.raises(ValueError, match="max_shards must be at least 1"):
        plan_shards([tiny], shards, 0.0, max_shards=0)


def test_exact_never_loses_to_greedy_on_random_fleets() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        shards = random_teacher(rng)
        devices = random_fleet(rng, shards, n=40)
        for lam in (0.0, 0.01):
            e, g = plan_shards(devices, shards, lam), plan_shards_greedy(devices, shards, lam)
            assert total_objective(g) <= total_objective(e) + 1e-9
            for a, b in zip(e, g):
                assert b.objective <= a.objective + 1e-12


def test_ten_thousand_devices_plan_with_one_row_per_device() -> None:
    rng = np.random.default_rng(3)
    shards = random_teacher(rng, exits=6)
    devices = random_fleet(rng, shards, n=10_000)
    plan = plan_shards(devices, shards, 0.01, max_shards=3)
    assert [a.device_id for a in plan] == [d.device_id for d in devices]
    assert len({a.shard_id for a in plan}) <= 3
    assert all(not violations(d, next(s for s in shards if s.shard_id == a.shard_id)) for d, a in zip(devices, plan))
