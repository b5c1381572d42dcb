"""The C core's blob codec against edge/: byte-identical encodings (float32, sq8/4/2, weights, model steps)
and identical decoded values, both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.model_step import apply_step, quantised_step
from edge.plan import TrainingSettings
from edge.stochastic_quantization import dequantize
from edge.update_quantization import update_tensors
from edge.wire import (
    ModelStepMeta,
    UpdateMeta,
    WeightsMeta,
    decode_model_step,
    decode_update,
    encode_model_step,
    encode_update,
    encode_weights,
    training_digest,
)

from .core_driver import decode, encode, flat_values, rounding_words, run, tensor_args

# Odd shapes, a scalar, an upper-case name (sorts before "__metadata__"), a name needing no escape but a slash.
SHAPES = {"dense_0/kernel": (7, 5), "dense_0/bias": (5,), "Z_scale": (), "out/kernel": (5, 3), "out/bias": (3,),
          "odd": (1, 3, 1, 2)}
ENCODINGS = ("float32-delta", "sq8-delta", "sq4-delta", "sq2-delta")


def delta(seed: int, scale: float = 0.05) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * scale).astype(np.float32) for name, shape in SHAPES.items()}


def meta(encoding: str, **changes: object) -> UpdateMeta:
    fields: dict = dict(fleet="demo", device="dev000", round=29, base_version=28, num_examples=100, clip=1.0,
                        noise_multiplier=0.0, dp_mode="none", encoding=encoding,
                        training=training_digest(TrainingSettings().declaration()))
    fields.update(changes)
    return UpdateMeta(**fields)


def parameters() -> int:
    return sum(int(np.prod(s, dtype=np.int64)) for s in SHAPES.values())


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_c_update_encoding_is_byte_identical_to_python(core_cli: Path, tmp_path: Path, encoding: str,
                                                       seed: int) -> None:
    d = delta(seed)
    m = meta(encoding, clip=0.5 + seed, noise_multiplier=1.1 * seed, dp_mode="local" if seed else "none")
    python = encode_update(update_tensors(d, encoding, np.random.default_rng(seed)), m)
    c = encode(core_cli, tmp_path, d, m, entropy=rounding_words(seed, parameters()))
    assert c == python


def test_c_update_of_constant_and_empty_tensors_is_byte_identical(core_cli: Path, tmp_path: Path) -> None:
    d = {"const": np.full((4, 3), 0.25, np.float32), "empty": np.zeros((0,), np.float32),
         "x": np.linspace(-1, 1, 9, dtype=np.float32)}
    for encoding in ENCODINGS:
        m = meta(encoding)
        python = encode_update(update_tensors(d, encoding, np.random.default_rng(5)), m)
        assert encode(core_cli, tmp_path, d, m, entropy=rounding_words(5, 21)) == python, encoding


def test_rounding_draws_exactly_one_word_per_value(core_cli: Path, tmp_path: Path) -> None:
    d = delta(3)
    (tmp_path / "values.f32").write_bytes(flat_values(d))
    args = ["encode-update", *tensor_args(d), "--values", tmp_path / "values.f32", "--out", tmp_path / "o.st",
            "--fleet", "demo", "--device", "dev000", "--encoding", "sq2-delta"]
    for words, expect_ok in ((parameters(), True), (parameters() - 1, False)):
        (tmp_path / "e.bin").write_bytes(rounding_words(3, words))
        result = run(core_cli, *args, "--entropy", tmp_path / "e.bin")
        assert result.ok is expect_ok, result.out
        if expect_ok:
            assert result.out["entropy_used"] == 8 * parameters()
        else:
            assert result.out["reason"] == "entropy_failed"


@pytest.mark.parametrize("name,value", [("fleet", "fl\u00e9et-\u2603"), ("device", 'dev"quote\\back'),
                                        ("clip", 1e-05), ("clip", 123456789012345680.0), ("noise_multiplier", 0.1)])
def test_metadata_text_and_floats_match_python(core_cli: Path, tmp_path: Path, name: str, value: object) -> None:
    m = meta("float32-delta", **{name: value})
    assert encode(core_cli, tmp_path, delta(0), m) == encode_update(delta(0), m)


def test_c_weights_are_byte_identical_and_round_trip(core_cli: Path, tmp_path: Path) -> None:
    w = delta(4, scale=1.0)
    m = WeightsMeta("demo", 7, 8)
    blob = encode(core_cli, tmp_path, w, m)
    assert blob == encode_weights(w, m)
    result, values = decode(core_cli, tmp_path, "weights", encode_weights(w, m), template=SHAPES)
    assert result.ok and values is not None
    for name in SHAPES:
        assert values[name].tobytes() == w[name].tobytes()
    assert result.out["meta"]["g"] == "7"


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_c_model_step_is_byte_identical_to_python(core_cli: Path, tmp_path: Path, bits: int) -> None:
    old, new = delta(10, 1.0), delta(11, 1.0)
    m = ModelStepMeta("demo", 9, 9, 8, encoding=f"sq{bits}-delta")
    wire, rebuilt = quantised_step(old, new, bits, np.random.default_rng(bits))
    python = encode_model_step(wire, m)
    assert encode(core_cli, tmp_path, new, m, entropy=rounding_words(bits, parameters()), old=old) == python
    # the device side: the C apply rule rebuilds exactly the aggregator's model
    result, values = decode(core_cli, tmp_path, "step", python, template=SHAPES, apply_to=old)
    assert result.ok and values is not None, result.out
    tensors, _ = decode_model_step(python)
    expected = apply_step(old, tensors, bits)
    for name in SHAPES:
        assert values[name].tobytes() == expected[name].tobytes() == rebuilt[name].tobytes()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_c_decoder_yields_pythons_values_for_python_updates(core_cli: Path, tmp_path: Path, encoding: str) -> None:
    d = delta(6)
    m = meta(encoding)
    blob = encode_update(update_tensors(d, encoding, np.random.default_rng(6)), m)
    result, values = decode(core_cli, tmp_path, "update", blob, template=SHAPES, accept=ENCODINGS)
    assert result.ok and values is not None, result.out
    tensors, got_meta = decode_update(blob, encodings=ENCODINGS)
    expected = tensors if encoding == "float32-delta" else dequantize(tensors, int(encoding[2]), SHAPES)
    for name in SHAPES:
        assert values[name].tobytes() == expected[name].tobytes()
    assert result.out["meta"]["c"] == "1.0" and result.out["meta"]["e"] == got_meta.encoding


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_python_decoder_accepts_c_updates(core_cli: Path, tmp_path: Path, encoding: str) -> None:
    d = delta(8)
    m = meta(encoding, num_examples=17)
    blob = encode(core_cli, tmp_path, d, m, entropy=rounding_words(8, parameters()))
    tensors, got = decode_update(blob, encodings=ENCODINGS)
    assert got == m
    if encoding == "float32-delta":
        for name in SHAPES:
            assert tensors[name].tobytes() == d[name].tobytes()
    else:
        values = dequantize(tensors, int(encoding[2]), SHAPES)
        levels = (1 << int(encoding[2])) - 1
        for name in SHAPES:  # unbiased rounding: every value within one step of the original
            span = float(d[name].max() - d[name].min())
            assert np.all(np.abs(values[name] - d[name]) <= span / levels * (1 + 1e-6) + 1e-12)


def test_update_blob_is_the_documented_digits_layout(core_cli: Path, tmp_path: Path) -> None:
    # docs/wire-protocol.md §3: an 8-bit update of 4,810 parameters has a 328-byte header
    d = {"w": np.linspace(-0.1, 0.1, 4806, dtype=np.float32), "b": np.zeros(4, np.float32),
         "c": np.ones(0, np.float32), "e": np.ones(0, np.float32)}
    blob = encode(core_cli, tmp_path, d, meta("sq8-delta"), entropy=rounding_words(0, 4810))
    assert int.from_bytes(blob[:8], "little") == 328
    assert len(blob) == 8 + 328 + 4810 + 32
