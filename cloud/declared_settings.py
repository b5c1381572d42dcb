"""What every update must declare, taken from its device's plan, and the check of a declaration against it.

An update states how it was made (DP mode, clip C, noise multiplier, encoding, and its training settings
as a digest of their canonical JSON: edge.wire.training_digest).
The aggregator admits it only if that statement is the plan's: a device that noised less, clipped
wider or trained otherwise than planned is refused with the field that differs, so the accountant's
epsilon and the aggregate's sensitivity rest on what was planned, not on what a device says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.plan import DevicePlan
from edge.stochastic_quantization import encoding_for_bits
from edge.wire import FLOAT32_DELTA, UpdateMeta, training_digest


@dataclass(frozen=True)
class DeclaredSettings:
    """The declaration an update must carry. training: canonical JSON, or None where no plan exists to say it."""

    dp_mode: str
    clip: float | None  # None: unclipped plain FedAvg, whatever it declares
    noise_multiplier: float  # what the device adds itself: the plan's z in `local` mode, else 0
    encoding: str = FLOAT32_DELTA
    training: str | None = None
    max_examples: int | None = None  # the plan's cap on the example count (the FedAvg weight); None: no plan

    @classmethod
    def from_plan(cls, plan: DevicePlan) -> DeclaredSettings:
        """What `plan`'s device must declare (its encoding is its plan's bit width)."""
        z = plan.noise_multiplier if plan.dp_mode == "local" else 0.0
        return cls(plan.dp_mode, plan.clip, z, encoding_for_bits(plan.update_bits), plan.training.declaration(),
                   plan.max_examples)

    def mismatch(self, meta: UpdateMeta) -> str | None:
        """The first declared field that differs from the plan, as a rejection reason; None if all agree."""
        if meta.dp_mode != self.dp_mode:
            return f"declares DP mode {meta.dp_mode!r}, its plan says {self.dp_mode!r}"
        if self.clip is not None and not math.isclose(meta.clip, self.clip, rel_tol=1e-9):
            return f"declares clip {meta.clip}, its plan says {self.clip}"
        if not math.isclose(meta.noise_multiplier, self.noise_multiplier, rel_tol=1e-9, abs_tol=1e-12):
            return f"declares noise multiplier {meta.noise_multiplier}, its plan says {self.noise_multiplier}"
        if meta.encoding != self.encoding:
            return f"declares encoding {meta.encoding!r} (bit width), its plan says {self.encoding!r}"
        if self.training is not None and meta.training != training_digest(self.training):
            return (f"declares training settings digest {meta.training or 'none'!r}, its plan says "
                    f"{training_digest(self.training)!r} (edge.wire.training_digest of {self.training})")
        return None
