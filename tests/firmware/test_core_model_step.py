"""A device applies a model step only if it fits and stays finite: the C apply rule refuses exactly the steps
edge.model_step.apply_step refuses, with the same reason code and message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge.model_step import apply_step, quantised_step
from edge.wire import ModelStepMeta, PayloadRejected, decode_model_step, encode_model_step

from .core_driver import decode

OLD = {"a/kernel": np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5), "a/bias": np.zeros(5, np.float32),
       "b": np.float32([0.5, -0.5, 3e38])}  # 23 values: sq2 leaves one padding pair in the last byte
TEMPLATE = {k: v.shape for k, v in OLD.items()}


def step_wire(bits: int) -> dict[str, np.ndarray]:
    new = {k: (v * np.float32(0.9)).astype(np.float32) for k, v in OLD.items()}
    wire, _ = quantised_step(OLD, new, bits, np.random.default_rng(bits))
    return wire


def edited(bits: int, edit: Callable[[dict[str, np.ndarray]], None]) -> bytes:
    wire = {k: v.copy() for k, v in step_wire(bits).items()}
    edit(wire)
    return encode_model_step(wire, ModelStepMeta("demo", 5, 5, 4, encoding=f"sq{bits}-delta"))


def _set(name: str, value: np.ndarray) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda wire: wire.__setitem__(name, value)


def _qparam(row: int, col: int, value: float) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda wire: wire["qparams"].__setitem__((row, col), value)


def _padding(wire: dict[str, np.ndarray]) -> None:
    wire["codes"][-1] |= 0b11000000


CASES = {
    "valid-sq8": (8, lambda wire: None),
    "valid-sq2": (2, lambda wire: None),
    "codes-of-another-student": (8, _set("codes", np.zeros(22, np.uint8))),
    "codes-at-another-bit-width": (4, _set("codes", np.zeros(23, np.uint8))),
    "qparams-of-another-shape": (8, _set("qparams", np.ones((2, 2), np.float32))),
    "zero-scale": (8, _qparam(1, 0, 0.0)),
    "negative-scale": (4, _qparam(0, 0, -1.0)),
    "padding-bits-set": (2, _padding),
    "extra-tensor": (8, _set("extra", np.zeros(1, np.float32))),
    "takes-a-weight-beyond-float32": (8, _qparam(2, 1, 3e38)),
    "dequantises-beyond-float32": (8, _qparam(2, 0, 3e38)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_c_applies_or_refuses_each_step_as_python_does(core_cli: Path, tmp_path: Path, name: str) -> None:
    bits, edit = CASES[name]
    blob = edited(bits, edit)
    result, values = decode(core_cli, tmp_path, "step", blob, template=TEMPLATE, apply_to=OLD)
    try:
        tensors, _ = decode_model_step(blob)
        expected = apply_step(OLD, tensors, bits)
    except PayloadRejected as exc:
        assert not result.ok, (name, "C applied a step Python refuses")
        assert result.out["reason"] == exc.reason, result.out
        assert result.out["message"] == str(exc), (result.out["message"], str(exc))
        return
    assert result.ok and values is not None, result.out
    for k in OLD:
        assert values[k].tobytes() == expected[k].tobytes()


def test_the_table_has_refusals_of_every_kind() -> None:
    reasons = set()
    for bits, edit in CASES.values():
        try:
            tensors, _ = decode_model_step(edited(bits, edit))
            apply_step(OLD, tensors, bits)
        except PayloadRejected as exc:
            reasons.add(exc.reason)
    assert reasons == {"malformed_payload", "wrong_shape"}


def python_step_verdict(blob: bytes) -> tuple[str, dict[str, np.ndarray] | None]:
    """'ok' and the rebuilt model, or the reason code, of edge/'s decode_model_step + apply_step."""
    try:
        tensors, meta = decode_model_step(blob)
        return "ok", apply_step(OLD, tensors, int(meta.encoding[2]))
    except PayloadRejected as exc:
        return exc.reason, None


def test_c_and_python_agree_on_fuzzed_model_steps(core_cli: Path, tmp_path: Path) -> None:
    from simulator.payload_fuzz import MUTATIONS, RandomChooser, fix_checksum

    chooser = RandomChooser(np.random.default_rng(42))
    seeds = [edited(bits, lambda wire: None) for bits in (8, 4, 2)]
    names = sorted(MUTATIONS)
    verdicts: dict[str, int] = {}
    for i in range(300):
        blob = seeds[i % 3]
        for _ in range(1 + i % 2):
            blob = MUTATIONS[names[int(chooser.integer(0, len(names) - 1))]](blob, chooser)
        if i % 3 == 0:
            blob = fix_checksum(blob, chooser)
        expected, model = python_step_verdict(blob)
        result, values = decode(core_cli, tmp_path, "step", blob, template=TEMPLATE, apply_to=OLD)
        got = "ok" if result.ok else result.out["reason"]
        assert got == expected, (result.out, blob[:160])
        if model is not None and values is not None:
            for k in OLD:
                assert values[k].tobytes() == model[k].tobytes()
        verdicts[got] = verdicts.get(got, 0) + 1
    assert verdicts.get("ok", 0) > 5 and verdicts.get("malformed_payload", 0) > 50 and len(verdicts) >= 3, verdicts
