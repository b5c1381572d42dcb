"""The C decoder refuses every malformed case of the Python codec's tables with the same reason code and a
comparable message (simulator.malformed_updates.CASES, tests/edge/test_wire.py's CASES), and agrees with the
Python decoder on fuzzed payloads (simulator.payload_fuzz's mutations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud.rejections import RejectionReason
from edge.wire import FLOAT32_DELTA, PayloadRejected, check_against_template, decode_update
from simulator import malformed_updates as mu
from simulator.payload_fuzz import RandomChooser, generate
from tests.edge import test_wire

from .core_driver import decode

DECODER_REASONS = {RejectionReason.MALFORMED_PAYLOAD, RejectionReason.WRONG_ENCODING, RejectionReason.WRONG_SHAPE}
# Cases the decoder itself refuses: the others need the aggregator's round state (cohort, round, declarations),
# and the uint8-affine ones an inbox that takes the FedCompress baseline, which the firmware never speaks.
DECODER_CASES = [c for c in mu.CASES if c.reason in DECODER_REASONS and c.inbox is mu.make_inbox and not c.before
                 and c.topic_device == "d0"]


def test_the_decoder_cases_cover_every_decoder_reason() -> None:
    assert {c.reason for c in DECODER_CASES} == DECODER_REASONS
    assert len(DECODER_CASES) >= 40


@pytest.mark.parametrize("case", DECODER_CASES, ids=[c.name for c in DECODER_CASES])
def test_c_decoder_refuses_each_malformed_update_with_its_reason(core_cli: Path, tmp_path: Path,
                                                                 case: mu.MalformedCase) -> None:
    result, _ = decode(core_cli, tmp_path, "update", case.build(), template=mu.TEMPLATE)
    assert not result.ok
    assert result.out["reason"] == case.reason.value, result.out
    assert case.detail in result.out["message"], result.out


WIRE_CASES = [c for c in test_wire.CASES if isinstance(c.build(), bytes)]  # "not-bytes" cannot reach C


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.name for c in WIRE_CASES])
def test_c_decoder_refuses_each_case_of_the_wire_table(core_cli: Path, tmp_path: Path, case: test_wire.Case) -> None:
    kind = "weights" if case.decoder is test_wire.decode_weights else "update"
    result, _ = decode(core_cli, tmp_path, kind, case.build())
    assert not result.ok and result.out["reason"] == "malformed_payload", result.out
    assert case.reason in result.out["message"], result.out


def test_the_valid_base_update_is_accepted_so_the_refusals_mean_something(core_cli: Path, tmp_path: Path) -> None:
    result, values = decode(core_cli, tmp_path, "update", mu.valid_blob(), template=mu.TEMPLATE)
    assert result.ok and values is not None
    for name, value in mu.valid_tensors().items():
        assert values[name].tobytes() == value.tobytes()


def python_verdict(blob: bytes) -> tuple[str, dict[str, np.ndarray] | None]:
    """'ok' with the tensors, or the reason code, of the Python decoder plus the template check."""
    try:
        tensors, _ = decode_update(blob, encodings=(FLOAT32_DELTA,))
        check_against_template(tensors, mu.TEMPLATE)
    except PayloadRejected as exc:
        return exc.reason, None
    return "ok", tensors


def test_c_and_python_decoders_agree_on_fuzzed_payloads(core_cli: Path, tmp_path: Path) -> None:
    chooser = RandomChooser(np.random.default_rng(20261203))
    verdicts: dict[str, int] = {}
    for _ in range(400):
        blob = generate(chooser).blob
        expected, tensors = python_verdict(blob)
        result, values = decode(core_cli, tmp_path, "update", blob, template=mu.TEMPLATE)
        got = "ok" if result.ok else result.out["reason"]
        assert got == expected, (result.out, blob[:200])
        if tensors is not None and values is not None:
            for name in mu.TEMPLATE:
                assert values[name].tobytes() == tensors[name].tobytes()
        verdicts[got] = verdicts.get(got, 0) + 1
    assert verdicts.get("ok", 0) > 20 and verdicts.get("malformed_payload", 0) > 100, verdicts
