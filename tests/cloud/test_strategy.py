"""FedAvg: example-weighted without DP, plain mean with DP, the discrete Gaussian sum in central mode (and the
float Gaussian sum kept for comparisons, checked against TF-Privacy's query)."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest

from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, GaussianSumMechanism, aggregate
from edge.noise_source import InsecureSeededNoise, SecureNoise
from edge.privacy import GRID_STEPS, DiscreteGaussianMechanism

GLOBAL = {"w": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "b": np.array([0.5, -0.5], np.float32)}


def _update(device: str, w: list, b: list, n: int) -> AcceptedUpdate:
    return AcceptedUpdate(device, {"w": np.array(w, np.float32), "b": np.array(b, np.float32)}, n)


UPDATES = [
    _update("a", [[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0], 10),
    _update("b", [[0.0, 2.0], [2.0, 0.0]], [-2.0, 4.0], 30),
]


def test_fedavg_without_dp_weights_deltas_by_example_count() -> None:
    result = aggregate(GLOBAL, UPDATES, FedAvgConfig(dp_mode=DpMode.NONE))
    # weights 10/40 and 30/40
    np.testing.assert_allclose(result.weights["w"], [[1.25, 3.5], [4.5, 4.25]], rtol=1e-6)
    np.testing.assert_allclose(result.weights["b"], [0.5 - 1.25, -0.5 + 3.25], rtol=1e-6)
    assert result.num_updates == 2 and not result.noised and result.dp_event is None
    assert all(v.dtype == np.float32 for v in result.weights.values())


def test_server_learning_rate_scales_the_mean_delta() -> None:
    result = aggregate(GLOBAL, UPDATES, FedAvgConfig(dp_mode=DpMode.NONE, server_lr=0.5))
    np.testing.assert_allclose(result.weights["w"], [[1.125, 2.75], [3.75, 4.125]], rtol=1e-6)


def test_local_mode_takes_the_plain_mean_ignoring_example_counts() -> None:
    result = aggregate(GLOBAL, UPDATES, FedAvgConfig(dp_mode=DpMode.LOCAL, clip=1.0, noise_multiplier=1.0))
    np.testing.assert_allclose(result.weights["w"], [[1.5, 3.0], [4.0, 4.5]], rtol=1e-6)
    np.testing.assert_allclose(result.weights["b"], [0.0, 2.0], rtol=1e-6)
    assert result.noised  # the devices noised; the server adds nothing, but the release is accounted
    accounted = DiscreteGaussianMechanism(1.0, 1.0, 6).effective_noise_multiplier  # 6 coordinates
    assert result.dp_event == dp_accounting.GaussianDpEvent(accounted)


def test_aggregate_with_no_updates_is_refused() -> None:
    with pytest.raises(ValueError, match="no accepted updates"):
        aggregate(GLOBAL, [], FedAvgConfig())


@pytest.mark.parametrize("text", ["centrall", "", "NONE", "gaussian"])
def test_dp_mode_parse_rejects_garbage_listing_the_modes(text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown DP mode .*none, local, central"):
        DpMode.parse(text)


def test_dp_mode_parse_accepts_the_three_names() -> None:
    assert [DpMode.parse(t) for t in ("none", "local", "central")] == [DpMode.NONE, DpMode.LOCAL, DpMode.CENTRAL]


# --- central mode: the discrete Gaussian on the grid, noise from the source the engine passes ---


def seeded(seed: int) -> InsecureSeededNoise:
    return InsecureSeededNoise(np.random.default_rng(seed))

def test_central_mode_noise_on_the_mean_has_stddev_z_c_over_k() -> None:
    k, z, clip, n = 4, 1.3, 0.8, 2000
    zero = {"v": np.zeros(n, np.float32)}
    updates = [AcceptedUpdate(f"d{i}", {"v": np.zeros(n, np.float32)}, 10) for i in range(k)]
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=clip, noise_multiplier=z)
    result = aggregate(zero, updates, config, seeded(11), expected_count=k)
    noise = result.weights["v"].astype(np.float64)
    expected = z * clip / k  # 0.26
    # sample std of 2000 normals: relative sd 1/sqrt(2n) ~ 1.6 %; 6 % is ~4 sigma
    assert np.std(noise) == pytest.approx(expected, rel=0.06)
    assert abs(np.mean(noise)) < 5 * expected / np.sqrt(n)
    assert result.noised and result.dp_event is not None
    assert "GaussianDpEvent" in type(result.dp_event).__name__
    assert float(result.dp_event.noise_multiplier) == pytest.approx(z / (1 + 1 / GRID_STEPS), rel=1e-9)


def test_central_mode_same_seed_same_noise_other_seed_other_noise() -> None:
    updates = [AcceptedUpdate("d", {"v": np.zeros(50, np.float32)}, 1)]
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=1.0)
    zero = {"v": np.zeros(50, np.float32)}
    a = aggregate(zero, updates, config, seeded(3), expected_count=1).weights["v"]
    b = aggregate(zero, updates, config, seeded(3), expected_count=1).weights["v"]
    c = aggregate(zero, updates, config, seeded(4), expected_count=1).weights["v"]
    d = aggregate(zero, updates, config, SecureNoise(), expected_count=1).weights["v"]
    e = aggregate(zero, updates, config, SecureNoise(), expected_count=1).weights["v"]
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c) and not np.array_equal(d, e)


def test_central_mode_clips_records_larger_than_the_clip_norm() -> None:
    big = np.array([3.0, 4.0], np.float32)          # norm 5, clipped to norm 1 -> [0.6, 0.8]
    small = np.array([0.1, 0.0], np.float32)        # below the clip: kept as is
    updates = [AcceptedUpdate("a", {"v": big}, 1), AcceptedUpdate("b", {"v": small}, 1000)]
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=1e-6)  # noise far below the grid step
    result = aggregate({"v": np.zeros(2, np.float32)}, updates, config, seeded(0), expected_count=2)
    np.testing.assert_allclose(result.weights["v"], [(0.6 + 0.1) / 2, 0.8 / 2], atol=2e-3)


def test_central_mode_clips_the_global_norm_across_tensors() -> None:
    update = AcceptedUpdate("a", {"x": np.array([3.0], np.float32), "y": np.array([[4.0]], np.float32)}, 1)
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=2.0, noise_multiplier=1e-6)
    result = aggregate({"x": np.zeros(1, np.float32), "y": np.zeros((1, 1), np.float32)}, [update], config,
                       seeded(0), expected_count=1)
    np.testing.assert_allclose(result.weights["x"], [1.2], atol=4e-3)
    np.testing.assert_allclose(result.weights["y"], [[1.6]], atol=4e-3)


def test_central_mode_without_a_noise_source_or_without_noise_is_refused() -> None:
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="needs a noise source"):
        aggregate(GLOBAL, UPDATES, config, expected_count=2)
    with pytest.raises(ValueError, match="expected cohort size"):
        aggregate(GLOBAL, UPDATES, config, seeded(0))
    with pytest.raises(ValueError, match="noise multiplier > 0"):
        aggregate(GLOBAL, UPDATES, FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=0.0), seeded(0),
                  expected_count=2)


def test_central_mode_divides_by_the_expected_cohort_not_by_the_updates_that_came() -> None:
    updates = [AcceptedUpdate(d, {"v": np.array([0.4, 0.0], np.float32)}, 1) for d in ("a", "b")]
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=1e-6)
    result = aggregate({"v": np.zeros(2, np.float32)}, updates, config, seeded(0), expected_count=4)
    np.testing.assert_allclose(result.weights["v"], [0.8 / 4, 0.0], atol=2e-3)


def test_gaussian_sum_mechanism_agrees_with_tf_privacy_gaussian_sum_query() -> None:
    """Same clipped sum and the same accounting event as TF-Privacy's query (noise off to compare sums)."""
    import tensorflow as tf
    from tensorflow_privacy.privacy.dp_query.gaussian_query import GaussianSumQuery

    rng = np.random.default_rng(5)
    records = [{"a": rng.normal(0, s, (3, 4)).astype(np.float32), "b": rng.normal(0, s, (4,)).astype(np.float32)}
               for s in (0.1, 1.0, 3.0)]
    names = ["a", "b"]
    query = GaussianSumQuery(l2_norm_clip=1.5, stddev=0.0)
    gs = query.initial_global_state()
    params = query.derive_sample_params(gs)
    sample = query.initial_sample_state([tf.zeros_like(records[0][n]) for n in names])
    mech = GaussianSumMechanism(clip=1.5, noise_multiplier=0.0)
    state = mech.initial_sample_state(records[0])
    for r in records:
        sample = query.accumulate_record(params, sample, [tf.constant(r[n]) for n in names])
        state = mech.accumulate_record(state, r)
    tf_sum, _, tf_event = query.get_noised_result(sample, gs)
    ours, event = mech.get_noised_result(state, np.random.default_rng(0))
    for i, n in enumerate(names):
        np.testing.assert_allclose(ours[n], tf_sum[i].numpy(), rtol=1e-5, atol=1e-6)
    assert event == tf_event == dp_accounting.GaussianDpEvent(0.0)


def test_float_noise_is_for_seeded_comparisons_only_and_is_accounted_as_the_plain_gaussian() -> None:
    config = FedAvgConfig(dp_mode=DpMode.CENTRAL, clip=1.0, noise_multiplier=1.5, float_noise=True)
    zero = {"v": np.zeros(4000, np.float32)}
    updates = [AcceptedUpdate("a", {"v": np.zeros(4000, np.float32)}, 1)]
    with pytest.raises(ValueError, match="seeded comparisons only"):
        aggregate(zero, updates, config, SecureNoise(), expected_count=2)
    result = aggregate(zero, updates, config, seeded(5), expected_count=2)
    assert float(result.dp_event.noise_multiplier) == 1.5
    assert np.std(result.weights["v"]) == pytest.approx(1.5 / 2, rel=0.05)
    assert not np.allclose(result.weights["v"] / (1.0 / (1000 * np.sqrt(4000))) % 1, 0)  # off the grid
