"""The generated MicroMutableOpResolver registers exactly the model's operators."""

from __future__ import annotations

import re

import pytest

from export.op_support import TFLM_OPS, model_ops
from export.quantize import convert_int8
from export.tflm_resolver import TFLM_ADD_METHODS, op_resolver_header, ops_in_resolver_header


def tflm_generator_name(op: str) -> str:
    """tflite-micro's gen_micro_mutable_op_resolver rule: CONV_2D -> AddConv2D."""
    parts = re.split("_|-", op)
    return "Add" + "".join(p[0].upper() + p[1:].lower() if len(p) > 1 and p[0].isalpha() else p.upper()
                           for p in parts)


@pytest.mark.parametrize("k", [1, 2])
def test_resolver_lists_exactly_the_model_ops(tiny_teacher, k):
    model = convert_int8(tiny_teacher.prefix(k), tiny_teacher.calibration_x, target="mcu", batch=1)
    header = op_resolver_header(model_ops(model), "shard_p1")
    registered = ops_in_resolver_header(header)
    assert sorted(registered) == sorted(model_ops(model))
    assert len(registered) == len(set(registered))
    assert f"constexpr unsigned int shard_p1_num_ops = {len(registered)};" in header
    assert "tflite::MicroMutableOpResolver<shard_p1_num_ops>" in header


def test_every_tflm_op_has_an_add_method_following_tflm_naming():
    assert set(TFLM_ADD_METHODS) >= TFLM_OPS
    exceptions = {"PADV2": "AddPadV2", "CUMSUM": "AddCumSum", "BATCH_MATMUL": "AddBatchMatMul",
                  "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}
    for op, method in TFLM_ADD_METHODS.items():
        assert method == exceptions.get(op, tflm_generator_name(op)), op


def test_op_without_tflm_kernel_is_refused():
    with pytest.raises(ValueError, match="GELU"):
        op_resolver_header({"CONV_2D", "GELU"}, "m")
