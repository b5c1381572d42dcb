"""Wrong flags fail fast with a message naming the fix, before any training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.broker import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, message", [
    (["--dp", "central"], "needs --target-epsilon or --noise-multiplier"),
    (["--devices", "0"], "must be at least 1"),
    (["--broker", "nonsense"], "expected 'host:port'"),
    (["--broker", "127.0.0.1:{port}"], "no MQTT broker answers"),
    (["--dp", "sometimes"], "invalid choice"),
], ids=["dp-without-budget", "zero-devices", "bad-broker-address", "broker-not-running", "unknown-dp-mode"])
def test_run_rejects_bad_flags_with_the_fix(args, message, tmp_path):
    args = [a.format(port=free_port()) for a in args]
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", "--run-dir", str(tmp_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "metrics.json").exists()
