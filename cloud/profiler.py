"""Cost of every teacher prefix: FLOPs, parameters, int8/float bytes, peak activations, TFLM arena.

FLOPs count a multiply-add as 2 and are per sample (one forward pass of one input).

Memory is estimated from the Keras graph, without converting, by replaying what TFLite-Micro
does with the int8 model:
- the converter's lowering: Conv2D -> CONV_2D with the ReLU fused, Dense -> FULLY_CONNECTED,
  Flatten -> RESHAPE (+ a shape tensor), GlobalAveragePooling2D -> MEAN (+ an axis tensor), ...;
- the "head" of the arena: every activation tensor (int8, 1 byte per element, rounded up to
  16 bytes) lives from the op that writes it to the last op that reads it, plus kernel scratch
  buffers, and is placed by TFLM's GreedyMemoryPlanner (largest first, lowest offset that does
  not overlap a buffer alive at the same time). `peak_activation_bytes` is that planned head;
- the "tail": persistent allocations, a TfLiteEvalTensor per tensor, a NodeAndRegistration
  per op, per-channel quantisation multipliers and shifts of convolutions, kernel op data,
  and the interpreter's fixed structures;
- the planner's own temporary memory while it plans (an AllocationInfo per tensor and the
  GreedyMemoryPlanner's per-buffer arrays), which shares the head's space before the head is
  laid out: it is what a model with tiny activations (dense layers) really needs there.
`arena_bytes` = tail + max(head, planning temp) + 16 B alignment slack, an estimate of the
smallest arena the TFLite-Micro interpreter runs the shard with. Struct sizes were calibrated
against tflite-micro 0.dev20261023182759 on x86_64 (64-bit pointers): on a 32-bit Cortex-M the
structs are smaller, so the tail there is a little smaller than this estimate and than the host
measurement. `arena_report` checks the estimate against `export.tflm_arena.minimum_arena_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from cloud.teacher import num_exits
from export.teacher_dir import prefix_model

BUFFER_ALIGN = 16  # TFLM aligns every planned buffer to 16 bytes
EVAL_TENSOR_BYTES = 24  # sizeof(TfLiteEvalTensor), 64-bit host
NODE_BYTES = 64  # sizeof(NodeAndRegistration), 64-bit host
IO_TENSOR_BYTES = 2 * 64 + 64  # persistent TfLiteTensor for input(0)/output(0) and their quantization
FIXED_TAIL_BYTES = 496 + 16 + 32  # interpreter/graph structs + persistent-buffer base + alignment slack
PER_OP_TAIL_BYTES = 32  # parsed builtin options per op (average)
ALLOCATION_INFO_BYTES = 32  # planning temp: sizeof(AllocationInfo) per tensor (constants included)
PLANNER_BUFFER_BYTES = 40  # planning temp: GreedyMemoryPlanner arrays per planned buffer
ALIGNMENT_SLACK_BYTES = 16  # the smallest working arena exceeds head + tail by up to one alignment unit
# Kernel op data kept in persistent buffers: (fixed bytes, bytes per output channel in two
# 16-byte-aligned int32 arrays: per-channel output multipliers and shifts).
OP_DATA_BYTES = {
    "CONV_2D": (80, 8), "DEPTHWISE_CONV_2D": (80, 8), "FULLY_CONNECTED": (72, 0), "MAX_POOL_2D": (32, 0),
    "AVERAGE_POOL_2D": (32, 0), "MEAN": (44, 0), "REDUCE_MAX": (44, 0), "RESHAPE": (0, 0),
}
DEFAULT_OP_DATA = (48, 0)


@dataclass(frozen=True)
class PrefixProfile:
    """What running prefix P_k costs, per sample.

    peak_activation_bytes: TFLM's planned activation memory (arena head) for the int8 shard;
    arena_bytes: estimated smallest TFLM arena that runs the shard (see the module docstring);
    ops: TFLite builtin operators the int8 shard is expected to use."""

    k: int
    flops: int
    params: int
    int8_bytes: int
    float_bytes: int
    peak_activation_bytes: int
    arena_bytes: int = 0
    ops: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ArenaCheck:
    """Estimated against measured TFLite-Micro arena for one prefix.

    measured_bytes: the smallest arena (16-byte steps) TFLite-Micro runs the shard with;
    recorded_bytes: the RecordingMicroAllocator's total (head + tail) for the same shard."""

    k: int
    estimate_bytes: int
    measured_bytes: int
    recorded_bytes: int
    measured_head_bytes: int
    estimated_head_bytes: int

    @property
    def relative_error(self) -> float:
        """(estimate - measured) / measured; positive means the estimate is on the safe side."""
        return (self.estimate_bytes - self.measured_bytes) / self.measured_bytes


def layer_flops(layer: tf.keras.layers.Layer) -> int:
    """Forward FLOPs of one Keras layer for a single sample (multiply-add = 2)."""
    out_shape = layer.output_shape if not isinstance(layer.output_shape, list) else layer.output_shape[0]
    in_shape = layer.input_shape if not isinstance(layer.input_shape, list) else layer.input_shape[0]
    out_elems = int(np.prod(out_shape[1:]))
    if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return 2 * out_elems * kh * kw + out_elems * 2
    if isinstance(layer, tf.keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = in_shape[-1]
        return 2 * out_elems * kh * kw * cin + out_elems * 2  # MACs + bias + relu
    if isinstance(layer, tf.keras.layers.Dense):
        return 2 * int(in_shape[-1]) * out_elems + out_elems
    if isinstance(layer, (tf.keras.layers.MaxPooling2D, tf.keras.layers.GlobalAveragePooling2D,
                          tf.keras.layers.AveragePooling2D, tf.keras.layers.GlobalMaxPooling2D)):
        return int(np.prod(in_shape[1:]))
    return 0


def forward_flops(model: tf.keras.Model) -> int:
    """Forward FLOPs per sample of every layer of the model (all its outputs), by layer_flops."""
    return int(sum(layer_flops(layer) for layer in model.layers
                   if not isinstance(layer, tf.keras.layers.InputLayer)))


def profile_prefix(teacher: tf.keras.Model, k: int) -> PrefixProfile:
    """Profile P_k from its layer graph (int8 bytes: 1 per weight, 4 per bias)."""
    return profile_model(prefix_model(teacher, k), k)


def profile_model(model: tf.keras.Model, k: int = 0) -> PrefixProfile:
    """Profile any single-input, single-output Keras classifier the way profile_prefix does."""
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    params = model.count_params()
    int8 = 0
    for layer in layers:
        for w in layer.weights:
            int8 += int(np.prod(w.shape)) * (4 if "bias" in w.name else 1)
    graph = lower_to_tflm(model)
    return PrefixProfile(k, forward_flops(model), int(params), int(int8), int(params * 4), graph.planned_head_bytes(),
                         graph.arena_bytes(), frozenset(op.kind for op in graph.ops))


def profile_teacher(teacher: tf.keras.Model) -> list[PrefixProfile]:
    """Profiles of P_1..P_L, shallowest first."""
    return [profile_prefix(teacher, k) for k in range(1, num_exits(teacher) + 1)]


def arena_report(teacher: tf.keras.Model, calibration_x: np.ndarray,
                 exported: dict[int, bytes] | None = None) -> list[ArenaCheck]:
    """Estimated vs TFLite-Micro-measured arena of every prefix's full-int8 shard.

    exported: {k: tflite bytes} already converted; missing prefixes are exported here."""
    from export.shards import export_int8_shard

    out = []
    for p in profile_teacher(teacher):
        model = (exported or {}).get(p.k) or export_int8_shard(prefix_model(teacher, p.k), calibration_x)
        out.append(arena_check(p, model))
    return out


def arena_check(profile: PrefixProfile, model: bytes, minimum_bytes: int | None = None) -> ArenaCheck:
    """The profile's arena estimate against TFLite-Micro running the converted shard.

    minimum_bytes: export.tflm_arena.minimum_arena_bytes(model) if already known; searched here otherwise."""
    from export.tflm_arena import measure_arena, minimum_arena_bytes

    used = measure_arena(model)
    minimum = minimum_arena_bytes(model) if minimum_bytes is None else minimum_bytes
    return ArenaCheck(profile.k, profile.arena_bytes, minimum, used.total_bytes, used.head_bytes,
                      profile.peak_activation_bytes)


# -- the TFLM view of a Keras model --


@dataclass
class TflmOp:
    """One TFLite operator as TFLM sees it: tensors read and written, constants, scratch, op data."""

    kind: str
    inputs: list[int]
    outputs: list[int]
    constants: int = 0  # weight/bias/shape tensors held in the flatbuffer
    channels: int = 0  # per-channel quantisation arrays (convolutions)
    scratch: list[int] = field(default_factory=list)  # bytes of each scratch buffer requested


@dataclass
class TflmGraph:
    """The int8 model as a list of ops over activation tensors (sizes in bytes)."""

    tensor_bytes: list[int]
    ops: list[TflmOp]
    inputs: list[int]
    outputs: list[int]

    def planned_head_bytes(self) -> int:
        """Replay TFLM's GreedyMemoryPlanner over tensor and scratch lifetimes; return the arena head."""
        n_ops = len(self.ops)
        first = {t: 0 for t in self.inputs}
        last: dict[int, int] = {}
        scratch: list[tuple[int, int, int]] = []
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                last[t] = i
            for t in op.outputs:
                first.setdefault(t, i)
            scratch += [(_align(b), i, i) for b in op.scratch]
        for t in self.outputs:
            last[t] = n_ops - 1
        # TFLM adds tensors in flatbuffer order (input, then activations op by op), then scratch buffers
        buffers = [(_align(self.tensor_bytes[t]), first[t], last.get(t, first[t])) for t in sorted(first)]
        return _greedy_plan(buffers + scratch)

    def planning_temp_bytes(self) -> int:
        """Temporary memory TFLM's allocator needs while planning: AllocationInfo per tensor + planner arrays."""
        n_tensors = len(self.tensor_bytes) + sum(op.constants for op in self.ops)
        n_planned = len(self.tensor_bytes) + sum(len(op.scratch) for op in self.ops)
        return ALLOCATION_INFO_BYTES * n_tensors + PLANNER_BUFFER_BYTES * n_planned

    def arena_bytes(self) -> int:
        """Estimated smallest arena that allocates and runs the model: tail + max(head, planning temp) + slack."""
        return self.tail_bytes() + max(self.planned_head_bytes(), self.planning_temp_bytes()) + ALIGNMENT_SLACK_BYTES

    def tail_bytes(self) -> int:
        """Persistent allocations TFLM makes at AllocateTensors, from the calibrated struct sizes."""
        n_tensors = len(self.tensor_bytes) + sum(op.constants for op in self.ops)
        op_data = 0
        for op in self.ops:
            fixed, per_channel = OP_DATA_BYTES.get(op.kind, DEFAULT_OP_DATA)
            op_data += fixed + (2 * _align(per_channel // 2 * op.channels) if per_channel else 0)
        return (FIXED_TAIL_BYTES + IO_TENSOR_BYTES + EVAL_TENSOR_BYTES * n_tensors
                + (NODE_BYTES + PER_OP_TAIL_BYTES) * len(self.ops) + op_data)


_FUSABLE = {"relu", "relu6", "linear"}
# ops whose TFLite options carry a fused activation: a ReLU right after them (sole reader) disappears
_FUSES_ACTIVATION = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "AVERAGE_POOL_2D",
                     "MAX_POOL_2D", "CONCATENATION"}
_ACTIVATION_OPS = {"relu": "RELU", "relu6": "RELU6", "sigmoid": "LOGISTIC", "tanh": "TANH", "softmax": "SOFTMAX",
                   "elu": "ELU", "hard_sigmoid": "HARD_SWISH", "swish": "HARD_SWISH"}


def lower_to_tflm(model: tf.keras.Model) -> TflmGraph:
    """The ops and activation tensors the TF 2.15 converter emits for a Keras model, int8."""
    L = tf.keras.layers
    sizes: list[int] = []
    ops: list[TflmOp] = []
    produced: dict[int, int] = {}  # id(KerasTensor) -> tensor index

    def new_tensor(shape) -> int:
        sizes.append(int(np.prod([d for d in shape[1:]])) if len(shape) > 1 else 1)
        return len(sizes) - 1

    def tensors_of(x) -> list:
        return list(x) if isinstance(x, (list, tuple)) else [x]

    readers: dict[int, int] = {}  # id(KerasTensor) -> how many layers of this model read it
    for layer in model.layers:
        if not isinstance(layer, L.InputLayer):
            for x in tensors_of(layer.input):
                readers[id(x)] = readers.get(id(x), 0) + 1
    kind_of: dict[int, str] = {}  # tensor index -> kind of the op that wrote it

    graph_inputs = []
    for x in model.inputs:
        produced[id(x)] = new_tensor(x.shape)
        graph_inputs.append(produced[id(x)])
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        ins = [produced[id(x)] for x in tensors_of(layer.input) if id(x) in produced]
        outs = tensors_of(layer.output)
        if not ins:
            continue  # not on the path to this model's output

        def emit(kind: str, constants: int = 0, channels: int = 0, scratch: tuple[int, ...] = (),
                 reads: list[int] | None = None, *, ins: list[int] = ins, outs: list = outs) -> int:
            t = new_tensor(outs[0].shape)
            ops.append(TflmOp(kind, list(ins if reads is None else reads), [t], constants, channels, list(scratch)))
            return t

        activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if isinstance(layer, L.ReLU) and layer.max_value in (None, 6.0) and not layer.negative_slope \
                and not layer.threshold:
            activation = "relu" if layer.max_value is None else "relu6"
        folded = isinstance(layer, (L.Dropout, L.BatchNormalization)) or (
            isinstance(layer, L.Activation) and activation == "linear")
        fused = (isinstance(layer, (L.ReLU, L.Activation)) and activation in ("relu", "relu6")
                 and kind_of.get(ins[0]) in _FUSES_ACTIVATION and readers.get(id(tensors_of(layer.input)[0])) == 1)
        if folded or fused:
            produced[id(outs[0])] = ins[0]  # folded into the previous op by the converter
            continue
        if isinstance(layer, L.DepthwiseConv2D):
            t = emit("DEPTHWISE_CONV_2D", 1 + layer.use_bias, int(outs[0].shape[-1]))
        elif isinstance(layer, L.Conv2D):
            t = emit("CONV_2D", 1 + layer.use_bias, layer.filters)
        elif isinstance(layer, L.Dense):
            has_bias = layer.use_bias and bool(np.any(layer.bias.numpy() != 0))  # zero biases are dropped
            t = emit("FULLY_CONNECTED", 1 + has_bias)
        elif isinstance(layer, L.MaxPooling2D):
            t = emit("MAX_POOL_2D")
        elif isinstance(layer, L.AveragePooling2D):
            t = emit("AVERAGE_POOL_2D")
        elif isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
            out_elems = int(np.prod(outs[0].shape[1:]))
            kind = "MEAN" if isinstance(layer, L.GlobalAveragePooling2D) else "REDUCE_MAX"
            t = emit(kind, 1, scratch=(4 * out_elems, 16, 16))  # int32 accumulators, axis and index temps
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            t = emit("RESHAPE", 1)
        elif isinstance(layer, L.ReLU):
            t = emit(_ACTIVATION_OPS.get(activation, "LEAKY_RELU"))
        elif isinstance(layer, L.Activation):
            t = emit(_ACTIVATION_OPS.get(activation, activation.upper()))
        elif isinstance(layer, L.Add):
            t = emit("ADD")
        elif isinstance(layer, L.Multiply):
            t = emit("MUL")
        elif isinstance(layer, L.Concatenate):
            t = emit("CONCATENATION")
        else:
            t = emit(type(layer).__name__.upper(), len(layer.weights))
        if activation not in _FUSABLE and isinstance(layer, (L.Conv2D, L.Dense)):
            t = emit(_ACTIVATION_OPS.get(activation, activation.upper()), reads=[t])
        produced[id(outs[0])] = t
        kind_of[t] = ops[-1].kind
    graph_outputs = [produced[id(x)] for x in model.outputs]
    return TflmGraph(sizes, ops, graph_inputs, graph_outputs)


def _align(n: int) -> int:
    return -(-n // BUFFER_ALIGN) * BUFFER_ALIGN


def _greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """TFLM GreedyMemoryPlanner: largest first, each at the lowest offset free during its lifetime.

    Equal sizes are placed last-added first: TFLM fills its sort array from the tail, then
    bubble-sorts it by size, which keeps that reversed order among ties."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last), kept sorted by offset
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
    for i in order:
        size, first, last = buffers[i]
        offset = 0
        for p_off, p_size, p_first, p_last in placed:
            if p_last < first or last < p_first:
                continue  # not alive at the same time
            if p_off >= offset + size:
                break
            offset = max(offset, p_off + p_size)
        placed.append((offset, size, first, last))
        placed.sort(key=lambda p: p[0])
    return max((off + size for off, size, _, _ in placed), default=0)
