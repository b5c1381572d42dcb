"""A read-only view of a TFLite flatbuffer's main graph: operators in execution order, their tensors,
and the Keras layer each operator came from (recovered from the converter's tensor names)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tensorflow.lite.python import schema_py_generated as schema_fb

_OP_NAMES = {v: k for k, v in vars(schema_fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema_fb.TensorType).items() if not k.startswith("_")}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: name, dtype ('int8', 'float32', ...), static shape, shape signature (-1 = dynamic)."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    constant: bool
    num_scales: int

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)


@dataclass(frozen=True)
class OpInfo:
    """One operator of subgraph 0, in execution order."""

    index: int
    name: str
    version: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def layer(self, layer_names: Iterable[str]) -> str | None:
        """The Keras layer this op was converted from: the first known layer name found in the
        op's output tensor names, then its weights', then its other inputs'
        (`model/block1_conv/Relu;...` -> block1_conv; QAT's `quant_block1_conv` -> block1_conv)."""
        known = set(layer_names)
        weights = [t for t in self.inputs if t.constant]
        for tensor in (*self.outputs, *weights, *self.inputs):
            for part in tensor.name.replace(";", "/").split("/"):
                for candidate in (part, part.removeprefix("quant_")):
                    if candidate in known:
                        return candidate
        return None


def _model(tflite_bytes: bytes):
    if len(tflite_bytes) < 8 or bytes(tflite_bytes[4:8]) != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    return schema_fb.Model.GetRootAsModel(bytearray(tflite_bytes), 0)


def _main_graph(tflite_bytes: bytes):
    model = _model(tflite_bytes)
    return model, model.Subgraphs(0)


def _op_code_names(model) -> list[str]:
    """Name of each operator code: the builtin's name, CUSTOM:<custom code> or UNKNOWN_<code>."""
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema_fb.BuiltinOperator.CUSTOM:
            names.append(f"CUSTOM:{(code.CustomCode() or b'').decode()}")
        else:
            names.append(_OP_NAMES.get(builtin, f"UNKNOWN_{builtin}"))
    return names


def operator_names(tflite_bytes: bytes) -> tuple[list[str], set[str]]:
    """Every operator code the model declares, and the names used by the operators of all its subgraphs."""
    model = _model(tflite_bytes)
    declared = _op_code_names(model)
    used: set[str] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        used.update(declared[graph.Operators(j).OpcodeIndex()] for j in range(graph.OperatorsLength()))
    return declared, used


def _tensor(model, graph, i: int) -> TensorInfo:
    t = graph.Tensors(i)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
    buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    constant = bool(buf is not None and (buf.DataLength() > 0 or buf.Size() > 0))
    q = t.Quantization()
    return TensorInfo(i, (t.Name() or b"").decode(), _TYPE_NAMES.get(t.Type(), f"type{t.Type()}"),
                      shape, sig, constant, q.ScaleLength() if q else 0)


def read_ops(tflite_bytes: bytes) -> list[OpInfo]:
    """Operators of the model's first subgraph (the one interpreters run) with their tensors."""
    model, graph = _main_graph(tflite_bytes)
    names = _op_code_names(model)
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        ins = tuple(_tensor(model, graph, int(i)) for i in op.InputsAsNumpy() if i >= 0) if op.InputsLength() else ()
        outs = tuple(_tensor(model, graph, int(i)) for i in op.OutputsAsNumpy() if i >= 0) if op.OutputsLength() else ()
        ops.append(OpInfo(j, names[op.OpcodeIndex()], int(model.OperatorCodes(op.OpcodeIndex()).Version()), ins, outs))
    return ops


def graph_io(tflite_bytes: bytes) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The main graph's input and output tensors."""
    model, graph = _main_graph(tflite_bytes)
    return ([_tensor(model, graph, int(i)) for i in graph.InputsAsNumpy()],
            [_tensor(model, graph, int(i)) for i in graph.OutputsAsNumpy()])


def per_channel_weight_ops(tflite_bytes: bytes) -> dict[str, bool]:
    """For every CONV_2D / DEPTHWISE_CONV_2D (by output name): whether its weights carry one scale per channel."""
    out = {}
    for op in read_ops(tflite_bytes):
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
            out[op.outputs[0].name] = op.inputs[1].num_scales > 1
    return out
