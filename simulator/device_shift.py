"""Device shift: every device's data passes through its own transform; the cloud's data through none.

The image analogue of a meter's own sensor and household: a gain and an offset on the intensities
(sensor calibration), a translation of up to a few pixels (mounting), additive noise (the sensor's
noise floor) and one class the device never sees (an appliance the household does not own). All
drawn per device from `strength` in [0, 1] (0: no shift) by a seeded Generator.

`augmented` is the cloud's answer: it knows the family of transforms, not any device's draw, and
trains the teacher and its students on random members of the family (`--cloud-augment S`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from simulator.data import Dataset

MIN_KEPT = 4
PARTS = ("gain", "offset", "translate", "noise", "missing")  # the components of a shift, all on by default
AUGMENT_GROUP = 16  # examples sharing one random shift when the cloud augments its data


@dataclass(frozen=True)
class ImageShift:
    """One device's transform of (N, H, W, C) images in [0, 1]."""

    gain: float
    offset: float
    dy: int
    dx: int
    noise_sd: float
    missing_class: int | None

    @classmethod
    def draw(cls, strength: float, num_classes: int, rng: np.random.Generator) -> ImageShift:
        """A device's shift at `strength` (0 = identity)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"--device-shift must be in [0, 1], got {strength}")
        if strength == 0:
            return cls(1.0, 0.0, 0, 0, 0.0, None)
        reach = int(round(2 * strength))
        return cls(float(rng.uniform(1 - 0.5 * strength, 1 + 0.5 * strength)),
                   float(rng.uniform(-0.25 * strength, 0.25 * strength)),
                   int(rng.integers(-reach, reach + 1)), int(rng.integers(-reach, reach + 1)),
                   0.1 * strength, int(rng.integers(num_classes)))

    def only(self, parts: tuple[str, ...]) -> ImageShift:
        """The same draw with the components not in `parts` switched off (the sweep of the shift's parts)."""
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown shift parts {unknown}; choose from {', '.join(PARTS)}")
        keep = set(parts)
        return ImageShift(self.gain if "gain" in keep else 1.0, self.offset if "offset" in keep else 0.0,
                          self.dy if "translate" in keep else 0, self.dx if "translate" in keep else 0,
                          self.noise_sd if "noise" in keep else 0.0,
                          self.missing_class if "missing" in keep else None)

    def apply(self, data: Dataset, rng: np.random.Generator) -> Dataset:
        """The device's view of `data`: its missing class removed, then the transform."""
        kept = np.flatnonzero(data.y != self.missing_class)
        if self.missing_class is not None and len(kept) >= MIN_KEPT:  # a device made of that class keeps it
            data = data.take(kept)
        dx = self.dx if data.x.shape[2] > 1 else 0  # a series (length, 1, 1) moves along time only
        x = translate(data.x, self.dy, dx) * self.gain + self.offset
        if self.noise_sd:
            x = x + rng.normal(0.0, self.noise_sd, x.shape)
        return Dataset(np.clip(x, 0.0, 1.0).astype(np.float32), data.y, data.labelled)


def translate(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images moved by (dy, dx) pixels, the uncovered border filled with 0 (no wrap-around)."""
    h, w = x.shape[1], x.shape[2]
    out = np.zeros_like(x)
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def augmented(data: Dataset, strength: float, copies: int, rng: np.random.Generator,
              group: int = AUGMENT_GROUP) -> Dataset:
    """`data` plus `copies` transformed copies: every group of examples through its own random shift
    of the same family (no missing class), so the cloud trains for variation it cannot see."""
    if copies < 0:
        raise ValueError(f"augmentation copies must be >= 0, got {copies}")
    if strength == 0 or copies == 0:
        return data
    parts = [data]
    for _ in range(copies):
        order = rng.permutation(len(data))
        for start in range(0, len(data), group):
            shift = dataclasses.replace(ImageShift.draw(strength, 1, rng), missing_class=None)
            parts.append(shift.apply(data.take(order[start:start + group]), rng))
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   None if data.labelled is None else np.concatenate([p.labelled for p in parts]))


def shift_devices(devices: list[Dataset], holdouts: list[Dataset], strength: float, num_classes: int,
                  rng: np.random.Generator, parts: tuple[str, ...] = PARTS
                  ) -> tuple[list[Dataset], list[Dataset], list[ImageShift]]:
    """Every device's training and held-out data through that device's own shift (only `parts` of it)."""
    shifts = [ImageShift.draw(strength, num_classes, rng).only(parts) for _ in devices]
    return ([s.apply(d, rng) for s, d in zip(shifts, devices)], [s.apply(h, rng) for s, h in zip(shifts, holdouts)],
            shifts)
