"""MCU export: the arena is measured in TFLite-Micro, the model runs with it and not with much less."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from export.c_array import parse_model_data_source
from export.errors import UnsupportedOnTarget
from export.op_support import model_ops
from export.quantize import convert_int8
from export.targets import ExportOptions
from export.targets.mcu import arena_with_headroom, check_mcu, export_mcu
from export.tflm_arena import measure_arena_bytes, minimum_arena_bytes
from export.tflm_resolver import ops_in_resolver_header
from export.verify import litert_logits, tflm_logits

from .helpers import bad_model, shard_source


@pytest.fixture(scope="module")
def mcu_model(tiny_teacher) -> bytes:
    return convert_int8(tiny_teacher.prefix(2), tiny_teacher.calibration_x, target="mcu", batch=1)


def run_in_tflm_subprocess(model_path, arena: int) -> subprocess.CompletedProcess:
    """TFLM may crash outright on a too-small arena: try it in a child process."""
    code = textwrap.dedent(f"""
        import numpy as np, sys
        from tflite_micro.python.tflite_micro import runtime
        m = open({str(model_path)!r}, "rb").read()
        try:
            it = runtime.Interpreter.from_bytes(m, arena_size={arena})
            d = it.get_input_details(0)
            it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
            it.invoke()
        except RuntimeError:
            sys.exit(3)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)


def test_model_runs_in_tflm_with_the_measured_arena_and_not_with_much_less(mcu_model, tmp_path, tiny_teacher):
    arena = minimum_arena_bytes(mcu_model)  # what export_mcu reports and verifies with
    assert 0 < measure_arena_bytes(mcu_model) <= arena < 1 << 20
    x = tiny_teacher.holdout_x[:64]
    micro = tflm_logits(mcu_model, x, arena_size=arena)
    lite = litert_logits(mcu_model, x)
    assert np.array_equal(micro.argmax(1), lite.argmax(1))  # same kernels' arithmetic, same top-1
    path = tmp_path / "m.tflite"
    path.write_bytes(mcu_model)
    assert run_in_tflm_subprocess(path, arena).returncode == 0
    assert run_in_tflm_subprocess(path, arena // 4).returncode != 0


def test_headroom_rounds_up_to_whole_kib():
    assert arena_with_headroom(2752, 0.25) == 4096
    assert arena_with_headroom(6560, 0.25) == 9216
    assert arena_with_headroom(1024, 0.0) == 1024
    assert arena_with_headroom(1025, 0.0) == 2048


def test_export_writes_c_array_resolver_and_arena_header(tiny_teacher, tmp_path):
    (art,) = export_mcu(shard_source(tiny_teacher, 2), tmp_path, ExportOptions(arena_headroom=0.25))
    model = (tmp_path / art.model.path).read_bytes()
    files = {f.path.rsplit("/", 1)[1]: (tmp_path / f.path).read_text() for f in art.files}
    assert parse_model_data_source(files["shard_p2_model_data.cc"]) == model
    header = files["shard_p2_model_data.h"]
    assert f"shard_p2_arena_measured_bytes = {art.arena.measured_bytes};" in header
    assert f"shard_p2_arena_size = {art.arena.with_headroom_bytes};" in header
    assert art.arena.with_headroom_bytes == arena_with_headroom(art.arena.measured_bytes, 0.25)
    assert sorted(ops_in_resolver_header(files["shard_p2_op_resolver.h"])) == sorted(model_ops(model))
    assert art.interpreter == "tflite-micro" and art.input_type == "int8" and art.output_type == "int8"
    assert art.check.top1_agreement >= 0.95


def test_layer_without_tflm_kernel_names_layer_op_and_target():
    model = bad_model(tf.keras.layers.Lambda(tf.nn.gelu, name="gelu_layer"))
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)
    tflite = convert_int8(model, x, target="mcu", batch=1)
    with pytest.raises(UnsupportedOnTarget) as err:
        check_mcu(tflite, [layer.name for layer in model.layers])
    message = str(err.value)
    assert "mcu" in message and "'gelu_layer'" in message and "GELU" in message
