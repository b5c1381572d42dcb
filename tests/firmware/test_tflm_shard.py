"""The firmware's shard inference (firmware_stubs/tflm glue, host build) equals TFLite-Micro's Python
interpreter exactly, on the configuration `python -m export` wrote for an mcu device class."""

from __future__ import annotations

import numpy as np
import pytest

from . import tflm_build
from .tflm_build import COLD_BUILD_SECONDS, MCU_CLASS, TflmFirmware, firmware_or_skip, run_driver


@pytest.fixture(scope="session")
def tflm_firmware(tmp_path_factory, default_teacher_dir) -> TflmFirmware:
    """The default teacher's P1 exported for a `meter` class and the glue's host driver built on it."""
    return firmware_or_skip(tmp_path_factory, default_teacher_dir)


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_export_writes_a_config_the_build_consumes(tflm_firmware, tmp_path_factory):
    raw_key = tflm_build.fleet_key(tmp_path_factory.getbasetemp() / "tflm_firmware")[1]
    cfg = tflm_firmware.config
    header = (tflm_firmware.config_dir / "dmskd_device_config.h").read_text()
    assert cfg["device_class"] == MCU_CLASS and cfg["shard_id"] == "P1"
    assert cfg["topic_prefix"] == "dmskd/test-fleet/" and '"dmskd/test-fleet/shard/P1"' in header
    assert bytes.fromhex(cfg["fleet_public_key"]) == raw_key
    assert ", ".join(f"0x{b:02x}" for b in raw_key) in header
    info = run_driver(tflm_firmware.driver, "info").stdout
    shard_part, student_part = info.split("\n")[0].split(" student ")
    shard = dict(tok.split("=") for tok in shard_part.split() if "=" in tok)
    student = dict(tok.split("=") for tok in student_part.split() if "=" in tok)
    # The declared arenas are what the firmware allocates; what TFLM used fits in them.
    assert int(shard["arena"]) == cfg["shard_arena_bytes"] >= cfg["shard_arena_measured_bytes"]
    assert int(shard["arena_used"]) <= cfg["shard_arena_bytes"]
    assert int(student["arena"]) == cfg["student_arena_bytes"] >= int(student["arena_used"])
    assert int(shard["input_len"]) == 64 and int(shard["num_classes"]) == 10
    assert (int(student["batch"]), int(student["input_dim"]), int(student["num_classes"])) == (16, 64, 10)
    tensors = [line.split()[1] for line in info.splitlines() if line.startswith("tensor ")]
    assert tensors == ["dense_0/kernel", "dense_0/bias", "dense_1/kernel", "dense_1/bias"]
    assert int(student["weights"]) == cfg["student_num_weights"] == 64 * 64 + 64 + 64 * 10 + 10  # the digits student


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_firmware_shard_equals_tflm_python_interpreter_exactly(tflm_firmware, default_teacher_dir, tmp_path):
    from tflite_micro.python.tflite_micro import runtime

    from export.teacher_dir import load_teacher_dir

    model = (tflm_firmware.export_dir / "mcu" / "shard_P1_int8.tflite").read_bytes()
    interp = runtime.Interpreter.from_bytes(model, arena_size=tflm_firmware.config["shard_arena_bytes"])
    d_in, d_out = interp.get_input_details(0), interp.get_output_details(0)
    scale, zero = d_in["quantization_parameters"]["scales"][0], d_in["quantization_parameters"]["zero_points"][0]
    held_out = load_teacher_dir(default_teacher_dir).holdout_x[:60].astype(np.float32)
    x = np.concatenate([held_out, np.zeros((1, *held_out.shape[1:]), np.float32)])  # + the all-zero sample
    q = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    expected = []
    for sample in q:
        interp.set_input(sample[None], 0)
        interp.invoke()
        expected.append(interp.get_output(0).copy())
    (tmp_path / "in.bin").write_bytes(q.tobytes())
    run_driver(tflm_firmware.driver, "shard", tmp_path / "in.bin", tmp_path / "out.bin")
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(len(q), -1)
    want = np.concatenate(expected).reshape(len(q), -1)
    assert got.shape == (len(q), d_out["shape"][-1])
    np.testing.assert_array_equal(got, want)
    assert len({tuple(row) for row in got}) > 5  # the logits depend on the input: not a constant output


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_driver_refuses_a_truncated_input_naming_the_size(tflm_firmware, tmp_path):
    (tmp_path / "short.bin").write_bytes(b"\x01\x02\x03")
    done = run_driver(tflm_firmware.driver, "shard", tmp_path / "short.bin", tmp_path / "o.bin", check=False)
    assert done.returncode == 2 and "whole number of 64-byte int8 inputs" in done.stderr


GLUE_REFUSALS = {  # driver case -> the status the glue must return (tools/glue_driver.cc run_errors)
    "shard-run-before-init": "NOT_INITIALISED", "student-step-before-init": "NOT_INITIALISED",
    "shard-not-a-model": "BAD_MODEL", "shard-unaligned": "BAD_ARGUMENT", "shard-arena-too-small": "ARENA_TOO_SMALL",
    "shard-given-the-train-step": "MISSING_OP", "student-given-the-shard": "BAD_SIGNATURE",
    "student-wrong-weight-count": "BAD_ARGUMENT", "student-initial-weights-absent": "BAD_ARGUMENT",
    "shard-ok": "OK", "shard-wrong-input-length": "BAD_ARGUMENT",
    "student-unbound-ok": "OK", "student-step-unbound": "NOT_INITIALISED",  # init with no buffer, bind later
    "student-bind-overlapping": "BAD_ARGUMENT", "student-bind-short": "BAD_ARGUMENT", "student-bind-packed": "OK",
}


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_glue_refuses_each_misuse_with_its_status(tflm_firmware):
    out = run_driver(tflm_firmware.driver, "errors").stdout
    got = dict(line.split() for line in out.splitlines())
    assert got == GLUE_REFUSALS
