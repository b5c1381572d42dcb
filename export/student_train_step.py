"""The student's train step as a functional TFLite graph for TFLite-Micro: weights in, weights out.

    train(dense_0__kernel, dense_0__bias, ..., x[B,D], y[B,C], teacher_logits[B,C], alpha, tau, lr)
        -> {"loss": [], "new_dense_0__kernel": ..., "new_dense_0__bias": ..., ...}

One signature, one subgraph, no resource variables (no VAR_HANDLE / READ_VARIABLE /
ASSIGN_VARIABLE / CALL_ONCE): the firmware keeps the weights in its own float buffer, feeds them in
and copies the new ones out, so reading the trained weights back (to publish an update) is reading
outputs. The loss and the SGD step are export.student's `_train`, computed by the same forward
pass and gradient tape, so LiteRT running the variable-based student and TFLite-Micro running this
graph train the same model (tests/firmware/test_tflm_train_step.py measures by how much).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb

from export.converter_log import captured_native_stderr
from export.student import assert_builtins_only, dense_layers, dense_weight_names, signature_key

SIGNATURE = "train"
HYPER_INPUTS = ("x", "y", "teacher_logits", "alpha", "tau", "lr")
LOSS_OUTPUT = "loss"
NEW_PREFIX = "new_"
VARIABLE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"})


def new_weight_key(name: str) -> str:
    """Output key of a weight's updated value: dense_0/kernel -> new_dense_0__kernel."""
    return NEW_PREFIX + signature_key(name)


def kd_loss(logits, y, teacher_logits, alpha, tau):
    """alpha*CE(y) + (1-alpha)*tau^2*KL(softmax(t/tau) || softmax(s/tau)), batch mean (export.student)."""
    ce = -tf.reduce_sum(y * tf.nn.log_softmax(logits), axis=-1)
    log_p_t = tf.stop_gradient(tf.nn.log_softmax(teacher_logits / tau))
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - tf.nn.log_softmax(logits / tau)), axis=-1)
    return tf.reduce_mean(alpha * ce + (1.0 - alpha) * tau * tau * kl)


def _relu(x: tf.Tensor) -> tf.Tensor:
    """x * (x > 0): ReLU with a builtin-only gradient (the same expression as cloud.student.builtin_relu)."""
    return x * tf.cast(x > 0, tf.float32)


@dataclass(frozen=True)
class DenseStack:
    """A dense student's shape: layer widths input_dim -> hidden... -> num_classes, ReLU between."""

    input_dim: int
    hidden: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        if self.input_dim < 1 or self.num_classes < 2 or any(h < 1 for h in self.hidden):
            raise ValueError(f"student needs input_dim >= 1, num_classes >= 2 and positive hidden widths, got "
                             f"input_dim={self.input_dim}, hidden={self.hidden}, num_classes={self.num_classes}")

    def shapes(self) -> list[tuple[int, ...]]:
        """Weight shapes in weight order: (D, h1), (h1,), (h1, h2), ..., (hL, C), (C,)."""
        widths = [self.input_dim, *self.hidden, self.num_classes]
        return [s for a, b in zip(widths, widths[1:]) for s in ((a, b), (b,))]

    def names(self) -> list[str]:
        """dense_0/kernel, dense_0/bias, ... (export.student's names)."""
        return [f"dense_{i}/{kind}" for i in range(len(self.hidden) + 1) for kind in ("kernel", "bias")]

    def num_weights(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes()))


class _FunctionalStep(tf.Module):
    """The train step as a pure function of (weights, batch, hyper-parameters)."""

    def __init__(self, names: list[str], shapes: list[tuple[int, ...]], activations: list, batch_size: int):
        super().__init__(name="student_train_step")
        self.names, self.activations = names, activations
        dim, classes, b = int(shapes[0][0]), int(shapes[-1][0]), int(batch_size)
        specs = [tf.TensorSpec(s, tf.float32, name=signature_key(n)) for n, s in zip(names, shapes)]
        specs += [tf.TensorSpec([b, dim], tf.float32, name="x"), tf.TensorSpec([b, classes], tf.float32, name="y"),
                  tf.TensorSpec([b, classes], tf.float32, name="teacher_logits")]
        specs += [tf.TensorSpec([], tf.float32, name=n) for n in ("alpha", "tau", "lr")]
        self.train = tf.function(self._train, input_signature=specs)

    def _train(self, *args):
        """One SGD step; returns the loss before it and every updated weight."""
        n = len(self.names)
        weights, (x, y, teacher_logits, alpha, tau, lr) = list(args[:n]), args[n:]
        with tf.GradientTape() as tape:
            tape.watch(weights)
            h = x
            for i, act in enumerate(self.activations):
                h = act(tf.matmul(h, weights[2 * i]) + weights[2 * i + 1])
            loss = kd_loss(h, y, teacher_logits, alpha, tau)
        grads = tape.gradient(loss, weights)
        out = {LOSS_OUTPUT: loss}
        for name, w, g in zip(self.names, weights, grads):
            out[new_weight_key(name)] = w - lr * g
        return out


def _identity(x: tf.Tensor) -> tf.Tensor:
    return x


def step_for_stack(stack: DenseStack, batch_size: int = 16) -> bytes:
    """The functional train step of a dense stack (ReLU hidden layers, linear logits), no Keras model needed."""
    acts = [_relu] * len(stack.hidden) + [_identity]
    return _convert(_FunctionalStep(stack.names(), stack.shapes(), acts, batch_size), batch_size)


def export_student_train_step(model: tf.keras.Model, batch_size: int = 16) -> bytes:
    """The functional train step of `model` (dense-only student, its layers' own activations) as TFLite."""
    layers = dense_layers(model)
    shapes = [tuple(w.shape) for layer in layers for w in layer.get_weights()]
    return _convert(_FunctionalStep(dense_weight_names(model), shapes, [la.activation for la in layers], batch_size),
                    batch_size)


def _convert(module: _FunctionalStep, batch_size: int) -> bytes:
    """Save the module's train signature and convert it with TFLite builtins only; no variable ops allowed."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with tempfile.TemporaryDirectory(prefix="dmskd_train_step_") as tmp:
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.train.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            with captured_native_stderr():
                tflite_model = bytes(converter.convert())
        except Exception as exc:  # ConverterError: the message lists the offending TF ops
            raise ValueError("the student's train step does not convert to TFLite builtins (use dense layers, "
                             f"builtin_relu activations and a fixed batch): {exc}") from exc
    ops = set(assert_builtins_only(tflite_model))
    if ops & VARIABLE_OPS:
        raise ValueError(f"functional train step still uses {sorted(ops & VARIABLE_OPS)}; it must take and "
                         "return its weights (report this as a converter change)")
    return tflite_model


def signature_tensor_order(tflite_bytes: bytes) -> tuple[list[str], list[str]]:
    """(input keys, output keys) of the train signature in subgraph order: TFLite-Micro's index order."""
    model = schema_fb.Model.GetRootAsModel(bytearray(tflite_bytes), 0)
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        if sd.SignatureKey().decode() != SIGNATURE:
            continue
        sub = model.Subgraphs(sd.SubgraphIndex())
        ins = {sd.Inputs(j).TensorIndex(): sd.Inputs(j).Name().decode() for j in range(sd.InputsLength())}
        outs = {sd.Outputs(j).TensorIndex(): sd.Outputs(j).Name().decode() for j in range(sd.OutputsLength())}
        return ([ins[sub.Inputs(j)] for j in range(sub.InputsLength())],
                [outs[sub.Outputs(j)] for j in range(sub.OutputsLength())])
    raise ValueError(f"model has no {SIGNATURE!r} signature: export it with export_student_train_step")


def initial_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """The Keras student's weights keyed dense_<i>/kernel, dense_<i>/bias (the firmware's first buffer)."""
    values = [w for layer in dense_layers(model) for w in layer.get_weights()]
    return {n: np.asarray(v, np.float32) for n, v in zip(dense_weight_names(model), values)}


def student_step(stack: DenseStack, batch_size: int, arena_headroom: float):
    """The stack's train step, its ops and its TFLite-Micro arena (measured as the shard's: export.tflm_arena)."""
    from export.firmware_config import StudentStep
    from export.op_support import model_ops
    from export.targets.mcu import arena_with_headroom
    from export.tflm_arena import measure_arena_bytes, minimum_arena_bytes

    tflite = step_for_stack(stack, batch_size)
    measured = minimum_arena_bytes(tflite, recorded_total=measure_arena_bytes(tflite))
    return StudentStep(tflite, tuple(sorted(model_ops(tflite))), int(batch_size), stack.input_dim,
                       stack.num_classes, stack.num_weights(), measured, arena_with_headroom(measured, arena_headroom))
