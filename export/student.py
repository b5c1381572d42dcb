"""Export the dense student as an on-device-trainable TFLite model (TFLITE_BUILTINS only).

Signatures (fixed batch B, input dim D, C classes; every shape static):
  train(x[B,D], y[B,C], teacher_logits[B,C], alpha[], tau[], lr[]) -> {"loss": []}
  infer(x[B,D]) -> {"logits": [B,C]}
  get_weights() -> {key: tensor}
  set_weights(**{key: tensor}) -> {"ok": []}   (ok == 1.0)
Weight names are "dense_<i>/kernel" and "dense_<i>/bias"; TFLite signature keys use
`signature_key(name)`: "/" becomes "__" (e.g. "dense_0__kernel").
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb

from edge.student_runtime import KEY_SEPARATOR
from export.converter_log import captured_native_stderr
from export.tflite_graph import operator_names

ALL_SIGNATURES: tuple[str, ...] = ("train", "infer", "get_weights", "set_weights")


def signature_key(name: str) -> str:
    """Map a weight name (dense_0/kernel) to its TFLite signature key (dense_0__kernel)."""
    return name.replace("/", KEY_SEPARATOR)


def dense_layers(model: tf.keras.Model) -> list[tf.keras.layers.Dense]:
    """The model's Dense layers in order; raise ValueError if it holds any other weighted layer."""
    dense = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Dense):
            if not layer.use_bias:
                raise ValueError(f"Dense layer {layer.name!r} has no bias: the student needs use_bias=True")
            dense.append(layer)
        elif layer.weights:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights: the trainable "
                "student must be built from Dense layers only (see cloud.student.build_student)"
            )
    if not dense:
        raise ValueError("model has no Dense layer: build it with cloud.student.build_student")
    return dense


def dense_weight_names(model: tf.keras.Model) -> list[str]:
    """Stable weight names in weight order: dense_0/kernel, dense_0/bias, dense_1/kernel, ..."""
    names: list[str] = []
    for i, _ in enumerate(dense_layers(model)):
        names += [f"dense_{i}/kernel", f"dense_{i}/bias"]
    return names


class _TrainableStudent(tf.Module):
    """tf.Module holding the student's weights as tf.Variables plus the four signatures."""

    def __init__(self, model: tf.keras.Model, batch_size: int):
        super().__init__(name="student")
        layers = dense_layers(model)
        self.names = dense_weight_names(model)
        self.activations = [layer.activation for layer in layers]
        self.vars = [
            tf.Variable(w, dtype=tf.float32, name=signature_key(n))
            for n, w in zip(self.names, [w for layer in layers for w in layer.get_weights()])
        ]
        dim, classes = int(self.vars[0].shape[0]), int(self.vars[-1].shape[0])
        b = int(batch_size)
        x_spec = tf.TensorSpec([b, dim], tf.float32, name="x")
        self.train = tf.function(
            self._train,
            input_signature=[
                x_spec, tf.TensorSpec([b, classes], tf.float32, name="y"),
                tf.TensorSpec([b, classes], tf.float32, name="teacher_logits"),
                tf.TensorSpec([], tf.float32, name="alpha"),
                tf.TensorSpec([], tf.float32, name="tau"),
                tf.TensorSpec([], tf.float32, name="lr"),
            ],
        )
        self.infer = tf.function(self._infer, input_signature=[x_spec])
        self.get_weights = tf.function(self._get_weights, input_signature=[])
        self.set_weights = tf.function(
            self._set_weights,
            input_signature=[
                tf.TensorSpec(v.shape, tf.float32, name=signature_key(n))
                for n, v in zip(self.names, self.vars)
            ],
        )

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        """Logits of the dense stack using the Keras layers' own activations."""
        h = x
        for i, act in enumerate(self.activations):
            h = tf.matmul(h, self.vars[2 * i]) + self.vars[2 * i + 1]
            h = act(h)
        return h

    def _train(self, x, y, teacher_logits, alpha, tau, lr):
        """One SGD step on alpha*CE + (1-alpha)*tau^2*KL(teacher||student), batch mean."""
        with tf.GradientTape() as tape:
            logits = self._forward(x)
            ce = -tf.reduce_sum(y * tf.nn.log_softmax(logits), axis=-1)
            log_p_t = tf.stop_gradient(tf.nn.log_softmax(teacher_logits / tau))
            kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - tf.nn.log_softmax(logits / tau)), axis=-1)
            loss = tf.reduce_mean(alpha * ce + (1.0 - alpha) * tau * tau * kl)
        grads = tape.gradient(loss, self.vars)
        for v, g in zip(self.vars, grads):
            v.assign_sub(lr * g)
        return {"loss": loss}

    def _infer(self, x):
        """Logits for a fixed-size batch."""
        return {"logits": self._forward(x)}

    def _get_weights(self):
        """Current weights keyed by signature key."""
        return {signature_key(n): v.read_value() for n, v in zip(self.names, self.vars)}

    def _set_weights(self, *values):
        """Assign all weights; returns ok == 1.0."""
        for v, value in zip(self.vars, values):
            v.assign(value)
        return {"ok": tf.constant(1.0)}


def export_trainable_student(
    model: tf.keras.Model,
    batch_size: int = 16,
    signatures: Sequence[str] = ALL_SIGNATURES,
) -> bytes:
    """Convert the student to a trainable TFLite flatbuffer with builtin ops and resource variables.

    `signatures` picks the exported signatures. The converter orders signature subgraphs by key
    (get_weights, infer, set_weights, train), then adds the variable-initialiser subgraph that a
    CALL_ONCE at the top of each signature runs. TFLite-Micro runs only subgraph 0, and (TFLM
    nightly 20261023) segfaults in MicroAllocator::CommitStaticMemoryPlan whenever the train
    subgraph sits beside other signatures: for microcontrollers export signatures=("train",). That model
    trains in TFLM with weights initialised from the flatbuffer; feed inputs in `subgraph_input_names(b)` order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unknown = [s for s in signatures if s not in ALL_SIGNATURES]
    if unknown or not signatures or len(set(signatures)) != len(signatures):
        raise ValueError(
            f"signatures must be distinct names from {ALL_SIGNATURES}, got {tuple(signatures)}"
        )
    module = _TrainableStudent(model, batch_size)
    with tempfile.TemporaryDirectory(prefix="dmskd_student_") as tmp:
        tf.saved_model.save(
            module, tmp, signatures={s: getattr(module, s).get_concrete_function() for s in signatures}
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        try:
            with captured_native_stderr():
                tflite_model = converter.convert()
        except Exception as exc:  # ConverterError: the message lists the offending TF ops
            raise ValueError(
                "student training step does not convert to TFLite builtins (use dense layers, "
                f"builtin_relu activations and a fixed batch): {exc}"
            ) from exc
    assert_builtins_only(tflite_model)
    return bytes(tflite_model)


def assert_builtins_only(tflite_bytes: bytes) -> list[str]:
    """Sorted op names used by the model (all subgraphs); ValueError naming any Flex/custom op it declares."""
    declared, used = operator_names(tflite_bytes)
    bad = sorted({op.removeprefix("CUSTOM:") if op.startswith("CUSTOM:Flex") else op
                  for op in declared if op.startswith(("CUSTOM:", "UNKNOWN_"))})
    if bad:
        raise ValueError(
            f"model uses non-builtin ops {bad}: keep shapes static, use dense layers and "
            "builtin_relu, and convert with TFLITE_BUILTINS only"
        )
    return sorted(used)


def subgraph_input_names(tflite_bytes: bytes, signature: str = "train") -> list[str]:
    """Signature input names in subgraph-input order (the index order TFLite-Micro's set_input uses)."""
    model = schema_fb.Model.GetRootAsModel(bytearray(tflite_bytes), 0)
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        if sd.SignatureKey().decode() == signature:
            by_tensor = {sd.Inputs(j).TensorIndex(): sd.Inputs(j).Name().decode() for j in range(sd.InputsLength())}
            sub = model.Subgraphs(sd.SubgraphIndex())
            return [by_tensor[sub.Inputs(j)] for j in range(sub.InputsLength())]
    raise ValueError(f"model has no signature {signature!r}")
