"""The real wire payloads of an in-process round: what a device sends, what the server decodes.

Bytes are counted as len() of these safetensors blobs, the same bytes an MQTT client publishes
(chunk framing and MQTT headers not included).
"""

from __future__ import annotations

import numpy as np

from edge.wire import (FLOAT32_DELTA, UINT8_AFFINE_DELTA, UpdateMeta, WeightsMeta, decode_update, decode_weights,
                       encode_update, encode_weights, update_id)
from simulator.baselines.quantization import dequantize_update, quantize_update

ENCODINGS = (FLOAT32_DELTA, UINT8_AFFINE_DELTA)


def global_model_payload(weights: dict[str, np.ndarray], fleet: str, round_: int) -> bytes:
    """The float32 global weights every device downloads at the start of round `round_`."""
    return encode_weights(weights, WeightsMeta(fleet, round_, round_))


def received_global_model(blob: bytes) -> dict[str, np.ndarray]:
    """What a device decodes from the global-model payload."""
    return decode_weights(blob)[0]


def update_payload(delta: dict[str, np.ndarray], meta: UpdateMeta) -> bytes:
    """A device's delta serialised in meta.encoding (float32, or uint8 codes + qparams for FedCompress)."""
    if meta.encoding == UINT8_AFFINE_DELTA:
        return encode_update(quantize_update(delta), meta)
    if meta.encoding == FLOAT32_DELTA:
        return encode_update(delta, meta)
    raise ValueError(f"unknown update encoding {meta.encoding!r}; choose one of {list(ENCODINGS)}")


def received_update(blob: bytes) -> tuple[dict[str, np.ndarray], UpdateMeta]:
    """Server side: decode and check the payload, dequantise uint8 updates to float32 deltas."""
    tensors, meta = decode_update(blob, encodings=ENCODINGS)
    if meta.encoding == UINT8_AFFINE_DELTA:
        tensors = dequantize_update(tensors)
    return tensors, meta


def update_meta(fleet: str, device: str, round_: int, num_examples: int, encoding: str = FLOAT32_DELTA,
                clip: float = 0.0, noise_multiplier: float = 0.0, dp_mode: str = "none") -> UpdateMeta:
    """Metadata of one update (global version = round), with the device agent's idempotent id."""
    return UpdateMeta(fleet, device, round_, round_, num_examples, clip, noise_multiplier, dp_mode,
                      update_id(device, round_, round_), encoding)
