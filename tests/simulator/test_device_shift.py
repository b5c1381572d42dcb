"""Device shift: each device's own transform of its data, seeded, and the identity at strength 0."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.data import Dataset
from simulator.device_shift import ImageShift, augmented, shift_devices, translate


def _data(n: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.uniform(0, 1, (n, 8, 8, 1)).astype(np.float32), np.arange(n) % 10)


def test_strength_zero_is_the_identity() -> None:
    shift = ImageShift.draw(0.0, 10, np.random.default_rng(0))
    data = _data()
    got = shift.apply(data, np.random.default_rng(1))
    np.testing.assert_array_equal(got.x, data.x)
    np.testing.assert_array_equal(got.y, data.y)


def test_translate_moves_pixels_and_fills_the_border_with_zero() -> None:
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 2, 0] = 1.0
    moved = translate(x, 1, -2)
    assert moved[0, 2, 0, 0] == 1.0 and moved.sum() == 1.0
    assert translate(x, 3, 0).sum() == 0.0  # moved out of the frame, not wrapped around


def test_a_shifted_device_lacks_its_missing_class_and_sees_transformed_intensities() -> None:
    shift = ImageShift(gain=0.5, offset=0.1, dy=0, dx=0, noise_sd=0.0, missing_class=3)
    data = _data()
    got = shift.apply(data, np.random.default_rng(0))
    assert 3 not in got.y and len(got) == len(data) - np.sum(data.y == 3)
    np.testing.assert_allclose(got.x, np.clip(data.x[data.y != 3] * 0.5 + 0.1, 0, 1), rtol=1e-6)


def test_devices_get_different_shifts_and_the_same_seed_gives_the_same_ones() -> None:
    devices, holdouts = [_data(seed=i) for i in range(4)], [_data(10, seed=9 + i) for i in range(4)]
    _, _, a = shift_devices(devices, holdouts, 0.8, 10, np.random.default_rng(5))
    _, _, b = shift_devices(devices, holdouts, 0.8, 10, np.random.default_rng(5))
    assert a == b and len(set(a)) == 4
    assert all(0.6 <= s.gain <= 1.4 and abs(s.offset) <= 0.2 and abs(s.dy) <= 2 for s in a)


def test_a_strength_outside_0_1_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--device-shift must be in"):
        ImageShift.draw(1.5, 10, np.random.default_rng(0))


def test_cloud_augmentation_adds_shifted_copies_and_keeps_the_originals_and_labels():
    rng = np.random.default_rng(0)
    data = Dataset(rng.uniform(0, 1, (40, 8, 8, 1)).astype(np.float32), np.arange(40) % 10)
    out = augmented(data, 0.5, 2, np.random.default_rng(1))
    assert len(out) == 120
    np.testing.assert_array_equal(out.x[:40], data.x)
    assert sorted(out.y[40:80]) == sorted(data.y)  # a copy holds every example once, every class kept
    assert not np.allclose(out.x[40:], np.concatenate([data.x, data.x]))
    assert out.x.min() >= 0 and out.x.max() <= 1
    assert augmented(data, 0.0, 2, np.random.default_rng(1)) is data


def test_a_shift_restricted_to_some_parts_keeps_their_draw_and_switches_off_the_rest():
    full = ImageShift.draw(0.8, 10, np.random.default_rng(2))
    gain_only = full.only(("gain",))
    assert gain_only == ImageShift(full.gain, 0.0, 0, 0, 0.0, None)
    assert full.only(("gain", "offset", "translate", "noise", "missing")) == full
    with pytest.raises(ValueError, match="unknown shift parts \\['tilt'\\]"):
        full.only(("tilt",))
