"""The Edge TPU check names every operator that would fall back to the CPU, with layer and reason."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from export.errors import UnsupportedOnTarget
from export.quantize import convert_int8
from export.targets import ExportOptions
from export.targets.edgetpu import check_edgetpu, cpu_fallbacks, export_edgetpu
from export.tflite_graph import graph_io

from .helpers import bad_model, shard_source

X = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)


def layer_names(model):
    return [layer.name for layer in model.layers]


def test_op_outside_edgetpu_set_is_named_with_layer_op_and_target():
    model = bad_model(tf.keras.layers.LeakyReLU(0.1, name="leaky"))
    tflite = convert_int8(model, X, target="edgetpu", io_type="uint8", batch=1)
    with pytest.raises(UnsupportedOnTarget) as err:
        check_edgetpu(tflite, layer_names(model))
    first = err.value.problems[0]
    assert (first.target, first.layer, first.operation) == ("edgetpu", "leaky", "LEAKY_RELU")
    message = str(err.value)
    assert "edgetpu: layer 'leaky' uses operation LEAKY_RELU" in message
    assert "not supported by the Edge TPU" in message
    # The compiler maps one contiguous part: the layers after it fall back too, and say why.
    later = [p for p in err.value.problems[1:] if p.layer in ("flatten", "logits")]
    assert later and all("follows the first unsupported operator" in p.reason for p in later)
    assert "--allow-cpu-fallback" in message


def test_float_operator_is_flagged_as_not_quantised():
    model = bad_model(tf.keras.layers.Lambda(lambda t: tf.sqrt(tf.abs(t)), name="sqrt_layer"))
    tflite = convert_int8(model, X, target="edgetpu", io_type="uint8", batch=1)
    sqrt = [f for f in cpu_fallbacks(tflite, layer_names(model)) if f.operation == "SQRT"]
    assert sqrt and sqrt[0].layer == "sqrt_layer"
    assert any("float32, not quantised to int8" in r for r in sqrt[0].reasons)


def test_dynamic_batch_is_flagged():
    model = bad_model(tf.keras.layers.ReLU(name="relu"))
    dynamic = convert_int8(model, X, target="edgetpu", io_type="uint8", batch=None)
    reasons = [r for f in cpu_fallbacks(dynamic, layer_names(model)) for r in f.reasons]
    assert any("dynamic shape" in r for r in reasons)
    static = convert_int8(model, X, target="edgetpu", io_type="uint8", batch=1)
    assert cpu_fallbacks(static, layer_names(model)) == []


def test_teacher_prefix_exports_with_uint8_io_no_fallback_and_compile_command(tiny_teacher, tmp_path):
    (art,) = export_edgetpu(shard_source(tiny_teacher, 2), tmp_path, ExportOptions())
    model = (tmp_path / art.model.path).read_bytes()
    (inp,), (out,) = graph_io(model)
    assert (inp.dtype, out.dtype) == ("uint8", "uint8")
    assert inp.shape_signature[0] == 1
    assert art.cpu_fallback == ()
    assert art.compile_command == "edgetpu_compiler -s -o edgetpu/compiled edgetpu/shard_p2_int8.tflite"
    report = (tmp_path / art.files[0].path).read_text()
    assert art.compile_command in report and "could not run" in report
    assert art.check.top1_agreement >= 0.95


def test_allow_cpu_fallback_exports_and_lists_them(tmp_path):
    model = bad_model(tf.keras.layers.LeakyReLU(0.1, name="leaky"))
    from export.artefact import ShardSource

    y = np.zeros(len(X), np.int64)
    src = ShardSource("bad", 1, model, model, "ptq", X, X, y, model.predict(X, verbose=0))
    with pytest.raises(UnsupportedOnTarget):
        export_edgetpu(src, tmp_path, ExportOptions())
    (art,) = export_edgetpu(src, tmp_path, ExportOptions(allow_cpu_fallback=True))
    assert [f.operation for f in art.cpu_fallback][0] == "LEAKY_RELU"
    assert "LEAKY_RELU" in (tmp_path / art.files[0].path).read_text()
