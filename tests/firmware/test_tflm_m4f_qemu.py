"""The TFLite-Micro glue cross-built for Cortex-M4F runs on QEMU mps2-an386 (semihosting) and gives the
host build's results: the shard's int8 logits bit for bit, one train step's loss and weights within float
rounding of the two C libraries' exp/log. Skips naming what is missing (TFLM_DIR, the cross toolchain, QEMU)."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from .tflm_build import COLD_BUILD_SECONDS, GLUE_SOURCE, REPO, TflmFirmware, firmware_or_skip, run_driver, source_trees

M4F_BUILD = REPO / "firmware_stubs" / "build" / "pytest-tflm-m4f"
TOOLCHAIN = REPO / "firmware_stubs" / "cmake" / "cortex-m4f.cmake"
SAMPLES = 4
STEP_TOL = 1e-6  # one train step: the weights move by ~1e-3; libm's exp/log may differ in the last bit


@pytest.fixture(scope="session")
def tflm_firmware(tmp_path_factory, default_teacher_dir) -> TflmFirmware:
    return firmware_or_skip(tmp_path_factory, default_teacher_dir)


@pytest.fixture(scope="session")
def qemu_lines(tflm_firmware, tmp_path_factory) -> list[str]:
    """What the glue's QEMU image printed for the session's configuration."""
    missing = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                    "qemu-system-arm")
    trees = source_trees()
    assert not isinstance(trees, str)
    for cmd in (["cmake", "-S", str(GLUE_SOURCE), "-B", str(M4F_BUILD), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
                 "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DDMSKD_DEVICE_CONFIG={tflm_firmware.config_dir}",
                 *(f"-D{var}={path}" for var, path in trees.items())],
                ["cmake", "--build", str(M4F_BUILD), "--parallel", str(os.cpu_count() or 2),
                 "--target", "dmskd_tflm_qemu_check"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # Into a file, not a pipe: QEMU drops semihosting output still buffered for a pipe when the guest exits.
    log = tmp_path_factory.mktemp("qemu") / "stdout.txt"
    with log.open("w") as out:
        run = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting", "-kernel",
                              str(M4F_BUILD / "dmskd_tflm_qemu_check.elf")], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=120)
    text = log.read_text()
    assert run.returncode == 0 and text.rstrip().endswith("done"), text[-2000:]
    return text.splitlines()


def _inputs(cfg: dict) -> dict[str, np.ndarray]:
    """tools/qemu_check.cc's fill_inputs, in numpy float32 (the same roundings)."""
    d, c, b, n = cfg["student_input_dim"], cfg["student_num_classes"], cfg["student_batch"], cfg["student_num_weights"]
    k, i = np.meshgrid(np.arange(SAMPLES), np.arange(d), indexing="ij")
    samples = ((i * 37 + k * 11) % 256 - 128).astype(np.int8)
    ix, iy, iw = np.arange(b * d), np.arange(b * c), np.arange(n)
    f32 = np.float32
    return {"samples": samples,
            "x": ((ix * 13) % 17).astype(f32) / f32(17),
            "y": ((iy % c) == ((iy // c) % c)).astype(f32),
            "t": ((iy * 7) % 11).astype(f32) / f32(11) * f32(4) - f32(2),
            "w": ((iw * 29) % 23).astype(f32) / f32(23) * f32(0.2) - f32(0.1)}


def _floats(words: list[str]) -> np.ndarray:
    return np.array([int(w, 16) for w in words], np.uint32).view(np.float32)


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_m4f_shard_on_qemu_equals_the_host_build_bit_for_bit(tflm_firmware, qemu_lines, tmp_path):
    inputs = _inputs(tflm_firmware.config)
    (tmp_path / "in.bin").write_bytes(inputs["samples"].tobytes())
    run_driver(tflm_firmware.driver, "shard", tmp_path / "in.bin", tmp_path / "out.bin")
    host = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(SAMPLES, -1)
    m4f = np.array([[int(v, 16) for v in line.split()[1:]] for line in qemu_lines if line.startswith("shard ")],
                   np.uint8).view(np.int8)
    np.testing.assert_array_equal(m4f, host)


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_the_meter_plus_arenas_hold_on_the_m4f_with_5_percent_headroom(tflm_firmware, qemu_lines):
    """The exported arenas (the host's measurement + 5%) allocate on the 32-bit target: the QEMU run
    initialised both interpreters in them and reports what each really used."""
    cfg = tflm_firmware.config
    used = {line.split()[1]: [int(v, 16) for v in line.split()[2:]] for line in qemu_lines
            if line.startswith("arena ")}
    assert used["shard"][1] == cfg["shard_arena_bytes"] and used["student"][1] == cfg["student_arena_bytes"]
    for name in ("shard", "student"):
        measured = cfg[f"{name}_arena_measured_bytes"]
        assert cfg[f"{name}_arena_bytes"] <= measured * 1.05 + 1024  # the meter-plus export: 5% (1 KiB steps)
        assert 0 < used[name][0] <= used[name][1]
        print(f"\n{name} arena on the M4F: used {used[name][0]} B of {used[name][1]} declared "
              f"(host measured {measured} B)")


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_m4f_train_step_on_qemu_matches_the_host_build(tflm_firmware, qemu_lines, tmp_path):
    inputs = _inputs(tflm_firmware.config)
    hp = np.array([0.7, 2.0, 0.05], np.float32)
    step = np.concatenate([inputs["w"], inputs["x"], inputs["y"], inputs["t"], hp])
    (tmp_path / "in.bin").write_bytes(step.tobytes())
    run_driver(tflm_firmware.driver, "train", tmp_path / "in.bin", tmp_path / "out.bin", 1)
    host = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
    loss = _floats([line.split()[1] for line in qemu_lines if line.startswith("loss ")])
    start = qemu_lines.index("weights") + 1
    weights = _floats([w for line in qemu_lines[start:] if line != "done" for w in line.split()])
    print(f"\nM4F (QEMU) vs host after one step: |loss diff| {abs(float(loss[0] - host[0])):.3g}, "
          f"max |weight diff| {np.abs(weights - host[1:]).max():.3g}")
    assert abs(float(loss[0] - host[0])) <= 1e-6 * max(1.0, abs(float(host[0])))
    assert weights.shape == host[1:].shape
    np.testing.assert_allclose(weights, host[1:], atol=STEP_TOL)
    assert np.abs(weights - inputs["w"]).max() > 1e-4  # the step moved the weights
