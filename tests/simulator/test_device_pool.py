"""Pool sampling (simulator.device_pool): any fleet size on the bundled data, every device its own Dirichlet label
mix, its held-out data never anybody's training data; and the auto rule that keeps the partition where it fits."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simulator.data import Dataset, federated_split, load_digits
from simulator.device_pool import DeviceSampling, holdout_size, label_distributions, pool_sample, split_pool
from simulator.meter_tasks import load_task


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def numbered(n: int, classes: int) -> Dataset:
    """n examples whose single pixel is their own index (so equality of values is identity of examples)."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    return Dataset(x, np.arange(n) % classes)


def histograms(y: np.ndarray, idx: np.ndarray, classes: int) -> np.ndarray:
    """(devices, classes): how many of each class every row of idx drew."""
    return np.stack([np.bincount(y[row], minlength=classes) for row in idx])


def residual_ratio(counts: np.ndarray, p: np.ndarray, k: int) -> float:
    """sum (n_ic - k p_ic)^2 over its multinomial expectation sum k p_ic (1 - p_ic): 1 on average when every
    device's counts are Multinomial(k, p_i). Over 2,000 devices x 10 classes its standard deviation is about 0.015."""
    return float(((counts - k * p) ** 2).sum() / (k * p * (1 - p)).sum())


def test_every_device_draws_exactly_k_samples(digits) -> None:
    split = federated_split(digits, 300, seed=0, sampling="pool", samples_per_device=17)
    assert [len(d) for d in split.devices] == [17] * 300
    assert [len(h) for h in split.device_holdout] == [holdout_size(17, 0.2)] * 300 == [4] * 300
    assert split.sampling is not None and (split.sampling.scheme, split.sampling.samples_per_device) == ("pool", 17)


def test_every_devices_label_histogram_follows_its_own_dirichlet_draw() -> None:
    classes, k, devices = 10, 200, 2000
    y = np.arange(5000) % classes
    rng = np.random.default_rng(7)
    p = label_distributions(devices, classes, 0.5, rng)
    counts = histograms(y, pool_sample(y, p, k, rng), classes)
    assert (counts.sum(axis=1) == k).all()
    assert 0.9 < residual_ratio(counts, p, k) < 1.1  # ~5 standard deviations either side
    # against another device's draw the same counts are far off: the check sees which mix is whose
    assert residual_ratio(counts, np.roll(p, 1, axis=0), k) > 3


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_the_spread_of_the_label_mixes_is_dirichlet_alpha(alpha: float) -> None:
    classes = 10
    p = label_distributions(20_000, classes, alpha, np.random.default_rng(3))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    expected = (1 / classes) * (1 - 1 / classes) / (classes * alpha + 1)  # Var p_ic of Dirichlet(alpha, ..., alpha)
    assert abs(p.var(axis=0).mean() / expected - 1) < 0.05
    assert abs(p.mean() - 1 / classes) < 1e-9


def test_a_class_the_pool_lacks_is_never_drawn_and_the_mix_renormalises_over_the_rest() -> None:
    classes, k = 5, 100
    y = np.repeat([0, 1, 2, 4], 50)  # no class 3
    rng = np.random.default_rng(11)
    p = label_distributions(2000, classes, 1.0, rng)
    counts = histograms(y, pool_sample(y, p, k, rng), classes)
    assert counts[:, 3].sum() == 0 and (counts.sum(axis=1) == k).all()
    kept = np.delete(p, 3, axis=1)
    assert 0.9 < residual_ratio(np.delete(counts, 3, axis=1), kept / kept.sum(axis=1, keepdims=True), k) < 1.1


def test_a_mix_that_underflowed_onto_absent_classes_draws_the_present_ones_uniformly() -> None:
    y = np.repeat([0, 1], 10)
    p = np.array([[0.0, 0.0, 1.0]])  # all mass on class 2, which the pool lacks
    counts = histograms(y, pool_sample(y, p, 1000, np.random.default_rng(0)), 3)
    assert counts[0, 2] == 0 and abs(counts[0, 0] - 500) < 100


def test_held_out_examples_are_no_devices_training_examples_and_the_cloud_and_test_splits_stay_outside() -> None:
    data = numbered(2000, 10)
    split = federated_split(data, 500, seed=4, sampling="pool", samples_per_device=32, labelled_fraction=0.5)
    ids = lambda parts: {int(v) for d in parts for v in d.x.ravel()}  # noqa: E731
    trained, held = ids(split.devices), ids(split.device_holdout)
    cloud, test = ids([split.cloud]), ids([split.test])
    assert trained and held and not trained & held
    assert not (trained | held) & (cloud | test) and not cloud & test
    assert all(d.num_labelled == 16 for d in split.devices)
    for d in split.devices + split.device_holdout:  # the labels travel with their examples
        np.testing.assert_array_equal(d.y, d.x.ravel().astype(int) % 10)


def test_the_pool_split_is_per_class_disjoint_and_complete() -> None:
    y = np.repeat(np.arange(4), [1, 2, 10, 50])
    train, hold = split_pool(y, 0.2, np.random.default_rng(0))
    assert not set(train) & set(hold) and sorted([*train, *hold]) == list(range(len(y)))
    assert np.bincount(y[hold], minlength=4).tolist() == [0, 0, 2, 10]  # round(0.2 n_c): classes of 1 and 2 stay out


def test_ten_thousand_devices_split_in_under_two_seconds_as_views_of_one_copy(digits) -> None:
    started = time.perf_counter()
    split = federated_split(digits, 10_000, seed=0, sampling="pool", samples_per_device=32)
    assert time.perf_counter() - started < 2.0
    assert len(split.devices) == 10_000 and all(len(d) == 32 for d in split.devices)
    base = split.devices[0].x.base
    assert base is not None and all(d.x.base is base for d in split.devices)  # 10,000 x 32 x 64 float32 = 82 MB
    assert base.nbytes == 10_000 * 32 * 64 * 4


def test_the_pool_is_deterministic_for_a_seed_and_differs_between_seeds(digits) -> None:
    a, b, c = (federated_split(digits, 200, seed=s, sampling="pool") for s in (5, 5, 6))
    for da, db in zip(a.devices + a.device_holdout, b.devices + b.device_holdout):
        np.testing.assert_array_equal(da.x, db.x)
        np.testing.assert_array_equal(da.y, db.y)
    assert any(not np.array_equal(da.y, dc.y) for da, dc in zip(a.devices, c.devices))


def test_auto_partitions_where_the_data_suffices_and_pools_beyond(digits) -> None:
    small = federated_split(digits, 10, seed=2)  # 809 device examples >= 10 x (32 + 8)
    explicit = federated_split(digits, 10, seed=2, sampling=DeviceSampling.PARTITION)
    assert small.sampling is not None and (small.sampling.scheme, small.sampling.requested) == ("partition", "auto")
    for d, e in zip(small.devices, explicit.devices):
        np.testing.assert_array_equal(d.x, e.x)
    assert sum(len(d) + len(h) for d, h in zip(small.devices, small.device_holdout)) == 809
    big = federated_split(digits, 21, seed=2)  # 21 x 40 > 809
    assert big.sampling is not None and big.sampling.scheme == "pool"
    with pytest.raises(ValueError, match="--device-sampling pool"):
        federated_split(digits, 200, seed=2, sampling="partition")


@pytest.mark.parametrize("task", ["italy-power", "acsf1", "plaid"])
def test_the_bundled_meter_tasks_serve_a_thousand_devices(task: str) -> None:
    split = federated_split(load_task(task), 1000, seed=0, labelled_fraction=0.0)
    assert split.sampling is not None and split.sampling.scheme == "pool"
    assert len(split.devices) == 1000 and all(len(d) == 32 and len(h) == 8
                                              for d, h in zip(split.devices, split.device_holdout))


@pytest.mark.parametrize("call, words", [
    (lambda y: pool_sample(y, np.full((3, 10), 0.1), 0, np.random.default_rng(0)), "--samples-per-device"),
    (lambda y: pool_sample(y[:0], np.full((3, 10), 0.1), 4, np.random.default_rng(0)), "--cloud-fraction"),
    (lambda y: label_distributions(3, 10, 0.0, np.random.default_rng(0)), "--dirichlet-alpha"),
    (lambda y: label_distributions(0, 10, 1.0, np.random.default_rng(0)), "--devices"),
    (lambda y: DeviceSampling.parse("lots"), "--device-sampling"),
], ids=["zero-samples", "empty-pool", "zero-alpha", "no-devices", "unknown-scheme"])
def test_bad_pool_arguments_name_the_flag(call, words) -> None:
    with pytest.raises(ValueError, match=words):
        call(np.arange(100) % 10)


@pytest.mark.parametrize("task", ["digits", "italy-power"])
def test_prepare_writes_a_200_device_fleet_from_the_pool(task: str, tmp_path, capsys) -> None:
    from simulator.__main__ import main

    from ..cli_helpers import call

    code, out, err = call(main, ["prepare", "--out", str(tmp_path), "--devices", "200", "--task", task,
                                 "--teacher-epochs", "1"], capsys)
    assert code == 0, err
    assert "200 devices draw 32 training and 8 held-out examples each" in out
    files = sorted((tmp_path / "devices").glob("*.npz"))
    assert len(files) == 200
    with np.load(files[-1]) as device:
        assert device["x"].shape[0] == 32 and device["y"].shape == (32,)
