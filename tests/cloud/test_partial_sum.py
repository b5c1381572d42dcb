"""The running sum of a round: merging partial sums equals one sum, and the inbox keeps no update's tensors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cloud.partial_sum import PartialSum, device_rounding_noise
from cloud.round_engine import EngineConfig, RoundEngine
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, finish
from edge.noise_source import InsecureSeededNoise
from edge.wire import UpdateMeta, encode_update

TEMPLATE = {"dense/kernel": (16, 8), "dense/bias": (8,)}
SEED = np.random.SeedSequence(5)


def updates(count: int, seed: int = 0) -> list[AcceptedUpdate]:
    rng = np.random.default_rng(seed)
    return [AcceptedUpdate(f"d{i}", {n: rng.normal(0, 0.1, s).astype(np.float32) for n, s in TEMPLATE.items()},
                           int(rng.integers(1, 50))) for i in range(count)]


def summed(config: FedAvgConfig, items: list[AcceptedUpdate]) -> PartialSum:
    partial = PartialSum.empty(TEMPLATE, config)
    for u in items:
        partial.add(u, device_rounding_noise(SEED, 0, u.device))
    return partial


@pytest.mark.parametrize("mode", list(DpMode))
def test_merged_partial_sums_release_what_one_sum_over_all_devices_releases(mode: DpMode) -> None:
    config = FedAvgConfig(mode, clip=0.5, noise_multiplier=0.7 if mode is not DpMode.NONE else 0.0)
    items = updates(9)
    whole = summed(config, items)
    merged = summed(config, items[:2]).merge(summed(config, items[2:6])).merge(summed(config, items[6:]))
    weights = {n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}
    releases = [finish(weights, p, config, InsecureSeededNoise(np.random.default_rng(1)), expected_count=9).weights
                for p in (whole, merged)]
    assert merged.count == whole.count == 9 and merged.weight == whole.weight
    for name in TEMPLATE:
        if mode is DpMode.CENTRAL:  # integers on the grid: any grouping gives the same bits
            assert releases[0][name].tobytes() == releases[1][name].tobytes()
        else:
            np.testing.assert_allclose(releases[0][name], releases[1][name], rtol=1e-6, atol=1e-7)


def test_none_mode_sum_is_the_example_weighted_mean() -> None:
    items = updates(4)
    config = FedAvgConfig(DpMode.NONE)
    got = finish({n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}, summed(config, items), config).weights
    total = sum(u.num_examples for u in items)
    for name in TEMPLATE:
        want = sum(u.delta[name].astype(np.float64) * u.num_examples for u in items) / total
        np.testing.assert_allclose(got[name], want, rtol=1e-6)


def test_a_device_counts_once_in_a_sum_and_in_a_merge() -> None:
    config = FedAvgConfig(DpMode.LOCAL, clip=1.0, noise_multiplier=0.5)
    first = summed(config, updates(3))
    with pytest.raises(ValueError, match="already in this sum"):
        first.add(updates(1, seed=9)[0])
    with pytest.raises(ValueError, match="overlap in \\['d0'\\]"):
        first.merge(summed(config, updates(1, seed=4)))


def test_sums_under_other_settings_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different aggregation settings"):
        summed(FedAvgConfig(DpMode.NONE), []).merge(summed(FedAvgConfig(DpMode.LOCAL, noise_multiplier=1.0), []))


def test_a_round_holds_no_update_tensors_however_many_arrive() -> None:
    shapes = {"w": (100, 100)}  # 40 kB per update: keeping 400 updates would take 16 MB
    devices = tuple(f"m{i:04d}" for i in range(400))
    engine = RoundEngine(EngineConfig("f", devices, 1, FedAvgConfig(DpMode.NONE), bound_updates=False))
    state = engine.init({"w": np.zeros(shapes["w"], np.float32)}, np.random.SeedSequence(0))
    opened = engine.open_round(state)
    delta = {"w": np.full(shapes["w"], 0.01, np.float32)}
    blobs = [encode_update(delta, UpdateMeta("f", d, 0, 0, 1, 1.0, 0.0, "none")) for d in devices]
    tracemalloc.start()
    try:
        for i, (device, blob) in enumerate(zip(devices, blobs, strict=True)):
            assert opened.inbox.offer(device, 0, blob) is not None
            if i == 39:
                after_40, _ = tracemalloc.get_traced_memory()
        after_400, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_400 - after_40 < 1_000_000, f"{after_400 - after_40} bytes grown over 360 updates"
    new, record = engine.apply(state, opened)
    assert len(record.accepted) == 400
    np.testing.assert_allclose(new.weights["w"], 0.01, rtol=1e-5)
