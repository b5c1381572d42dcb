"""The core's self-test (tools/selftest_cases.c: fixed inputs through every module): its host lines equal what
edge/ computes from the same inputs, and the same source on an emulated Cortex-M4F (QEMU mps2-an386,
semihosting) prints the same lines: the quantisation, float texts and digests are bit-exact on the meter's
FPU and soft double too."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.plan import TrainingSettings
from edge.update_quantization import update_tensors
from edge.wire import UpdateMeta, WeightsMeta, encode_update, encode_weights, training_digest

from .conftest import FirmwareBuild

MASK = (1 << 64) - 1


class SplitMix:
    """splitmix64, as the self-test draws its inputs and entropy; `random` stands in for numpy's Generator."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def word(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def random(self, n: int) -> np.ndarray:
        return np.array([(self.word() >> 11) * 2.0 ** -53 for _ in range(n)])


def selftest_values(seed: int) -> dict[str, np.ndarray]:
    rng = SplitMix(seed)
    v = np.array([((rng.word() >> 40) - 2 ** 23) / 2 ** 26 for _ in range(40)], np.float32)
    return {"dense/kernel": v[:35].reshape(7, 5), "dense/bias": v[35:]}


def line(name: str, blob: bytes) -> str:
    return f"{name}: {len(blob)} bytes sha256 {hashlib.sha256(blob).hexdigest()}"


def run_host(build: FirmwareBuild) -> list[str]:
    done = subprocess.run([str(build.binary("dmskd_core_selftest"))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_the_host_selftest_equals_edge_on_the_same_inputs(firmware_build: FirmwareBuild) -> None:
    lines = run_host(firmware_build)
    values = selftest_values(1)
    for e, encoding in enumerate(("float32-delta", "sq8-delta", "sq4-delta", "sq2-delta")):
        meta = UpdateMeta("demo", "dev000", 29, 28, 100, 1.0, 0.0, "none", encoding=encoding,
                          training="f1731cfd17effbfa")
        blob = encode_update(update_tensors(values, encoding, SplitMix(100 + e)), meta)  # type: ignore[arg-type]
        assert line(f"update {encoding}", blob) in lines
    assert line("weights", encode_weights(values, WeightsMeta("demo", 7, 8))) in lines
    digest = training_digest(TrainingSettings(alpha=0.5, lr=0.05, clip=2).declaration())
    assert f"plan digest {digest}" in lines
    assert "repr " + " ".join(repr(x) for x in (1.0, 0.1, 1e-05, 1e16, 123456789.125, 3.0e38)) in lines
    assert "internal failures 0" in lines and any("genuine verifies forged refused" in x for x in lines)


def test_the_selftest_prints_the_same_on_an_emulated_cortex_m4f(firmware_build: FirmwareBuild, m4f_report: dict,
                                                                 tmp_path: Path) -> None:
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed (apt-get install qemu-system-arm; .ci/run does)")
    elf = Path(m4f_report["elf"]).parent / "dmskd_core_selftest_m4f.elf"
    console = tmp_path / "semihosting.txt"
    done = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
                           "-semihosting-config", "enable=on,target=native,chardev=console",
                           "-chardev", f"file,id=console,path={console}", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr  # the image's semihosting exit: no internal failure
    arm = console.read_text().splitlines()
    host = run_host(firmware_build)
    assert len(arm) == len(host) > 15
    for a, h in zip(arm, host, strict=True):
        if a.startswith("ed25519"):  # the backends differ (Monocypher on the MCU), the verdicts must not
            assert a.split(" ", 2)[2] == h.split(" ", 2)[2] == "genuine verifies forged refused"
        else:
            assert a == h
