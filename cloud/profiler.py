"""Cost of every teacher prefix: FLOPs, parameters, int8/float bytes and peak activations.

FLOPs count a multiply-add as 2 and are per sample (one forward pass of one input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cloud.teacher import num_exits, prefix_model


@dataclass(frozen=True)
class PrefixProfile:
    """What running prefix P_k costs, per sample."""

    k: int
    flops: int
    params: int
    int8_bytes: int
    float_bytes: int
    peak_activation_bytes: int


def layer_flops(layer: tf.keras.layers.Layer) -> int:
    """Forward FLOPs of one Keras layer for a single sample (multiply-add = 2)."""
    out_shape = layer.output_shape if not isinstance(layer.output_shape, list) else layer.output_shape[0]
    in_shape = layer.input_shape if not isinstance(layer.input_shape, list) else layer.input_shape[0]
    out_elems = int(np.prod(out_shape[1:]))
    if isinstance(layer, tf.keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = in_shape[-1]
        return 2 * out_elems * kh * kw * cin + out_elems * 2  # MACs + bias + relu
    if isinstance(layer, tf.keras.layers.Dense):
        return 2 * int(in_shape[-1]) * out_elems + out_elems
    if isinstance(layer, (tf.keras.layers.MaxPooling2D, tf.keras.layers.GlobalAveragePooling2D,
                          tf.keras.layers.AveragePooling2D)):
        return int(np.prod(in_shape[1:]))
    return 0


def profile_prefix(teacher: tf.keras.Model, k: int) -> PrefixProfile:
    """Profile P_k from its layer graph (int8 bytes: 1 per weight, 4 per bias)."""
    model = prefix_model(teacher, k)
    layers = [l for l in model.layers if not isinstance(l, tf.keras.layers.InputLayer)]
    flops = sum(layer_flops(l) for l in layers)
    params = model.count_params()
    int8 = 0
    for l in layers:
        for w in l.weights:
            int8 += int(np.prod(w.shape)) * (4 if "bias" in w.name else 1)
    peak = 0
    for l in layers:
        ins = l.input_shape if not isinstance(l.input_shape, list) else l.input_shape[0]
        outs = l.output_shape if not isinstance(l.output_shape, list) else l.output_shape[0]
        peak = max(peak, int(np.prod(ins[1:])) + int(np.prod(outs[1:])))
    return PrefixProfile(k, int(flops), int(params), int(int8), int(params * 4), int(peak))


def profile_teacher(teacher: tf.keras.Model) -> list[PrefixProfile]:
    """Profiles of P_1..P_L, shallowest first."""
    return [profile_prefix(teacher, k) for k in range(1, num_exits(teacher) + 1)]
