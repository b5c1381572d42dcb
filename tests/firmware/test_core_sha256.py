"""The core's SHA-256 equals hashlib's on lengths around every padding boundary."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 100_003])
def test_sha256_matches_hashlib(core_cli: Path, tmp_path: Path, length: int) -> None:
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    out = subprocess.run([str(core_cli), "sha256", str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(data).hexdigest()
