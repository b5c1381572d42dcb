"""The core writes floats as Python's repr (the metadata's clip and noise, the plan's declaration digest):
equal on random doubles of every magnitude and on the edge cases of repr's notation switch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

EDGES = [0.0, -0.0, 1.0, 0.5, 0.1, 1e-05, 0.0001, 0.00012345, 1e16, 9999999999999998.0, 1e15, 123456789012345680.0,
         5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0 ** 53, 2.0 ** 53 + 2, 1.1, 100.0, 3e38]


def test_float_text_is_pythons_repr(core_cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 63, 4000, dtype=np.uint64) | (rng.integers(0, 2, 4000, dtype=np.uint64) << 63)
    randoms = bits.view(np.float64)
    scaled = rng.standard_normal(2000) * 10.0 ** rng.integers(-8, 20, 2000)
    values = np.concatenate([np.array(EDGES), randoms[np.isfinite(randoms)], scaled, scaled.astype(np.float32)])
    (tmp_path / "v.f64").write_bytes(values.astype("<f8").tobytes())
    out = subprocess.run([str(core_cli), "repr", str(tmp_path / "v.f64")], capture_output=True, text=True,
                         check=True).stdout.split("\n")[:-1]
    expected = [repr(float(v)) for v in values]
    mismatches = [(e, g) for e, g in zip(expected, out, strict=True) if e != g]
    assert not mismatches, mismatches[:10]
