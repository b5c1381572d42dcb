"""Protocol 3's compact update in the C core against edge.compact_update: byte-identical encodings, the same
metadata and values decoded both ways, and every malformed case of the Python table refused with the same
reason and message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.compact_update import decode_compact_update, encode_compact_update
from edge.stochastic_quantization import dequantize
from edge.update_quantization import update_tensors
from edge.wire import decode_update
from tests.edge import test_compact_update as table

from .core_driver import decode, encode, rounding_words
from .test_core_blob import SHAPES, delta, meta, parameters

SQ = ("sq8-delta", "sq4-delta", "sq2-delta")


@pytest.mark.parametrize("encoding", SQ)
@pytest.mark.parametrize("seed", [0, 1])
def test_c_compact_update_is_byte_identical_to_python(core_cli: Path, tmp_path: Path, encoding: str,
                                                      seed: int) -> None:
    d = delta(seed)
    m = meta(encoding, clip=0.5 + seed, noise_multiplier=1.1 * seed, dp_mode="local" if seed else "none",
             round=300 + seed, num_examples=129)  # varints of two bytes
    python = encode_compact_update(update_tensors(d, encoding, np.random.default_rng(seed)), m)
    c = encode(core_cli, tmp_path, d, m, entropy=rounding_words(seed, parameters()), compact=True)
    assert c == python
    assert decode_compact_update(c)[1] == m


@pytest.mark.parametrize("encoding", SQ)
def test_c_reads_python_compact_updates_as_python_does(core_cli: Path, tmp_path: Path, encoding: str) -> None:
    d = delta(4)
    m = meta(encoding, dp_mode="central", noise_multiplier=0.0)
    blob = encode_compact_update(update_tensors(d, encoding, np.random.default_rng(4)), m)
    result, values = decode(core_cli, tmp_path, "update", blob, template=SHAPES, accept=SQ)
    assert result.ok and values is not None, result.out
    tensors, got = decode_update(blob, SQ)
    expected = dequantize(tensors, int(encoding[2]), SHAPES)
    for name in SHAPES:
        assert values[name].tobytes() == expected[name].tobytes()
    assert result.out["meta"] == {"b": "28", "c": "1.0", "d": "dev000", "e": encoding, "f": "demo", "m": "central",
                                  "n": "100", "r": "29", "t": got.training, "z": "0.0"}


def test_c_refuses_a_compact_encoding_the_receiver_does_not_take(core_cli: Path, tmp_path: Path) -> None:
    blob = encode_compact_update(update_tensors(delta(2), "sq4-delta", np.random.default_rng(2)), meta("sq4-delta"))
    result, _ = decode(core_cli, tmp_path, "update", blob, accept=("sq8-delta",))
    assert not result.ok and result.out["reason"] == "wrong_encoding", result.out
    assert "update encoding 'sq4-delta' not accepted here" in result.out["message"]


@pytest.mark.parametrize("case", sorted(table.MALFORMED))
def test_c_refuses_each_malformed_compact_update_as_python_does(core_cli: Path, tmp_path: Path, case: str) -> None:
    make, expected = table.MALFORMED[case]
    blob = make(table._body(encode_compact_update(table._wire(8), table._meta(8))))
    result, _ = decode(core_cli, tmp_path, "update", blob, accept=SQ)
    assert not result.ok and result.out["reason"] == "malformed_payload", result.out
    with pytest.raises(Exception) as python:
        decode_update(blob, SQ)
    assert result.out["message"] == str(python.value), (result.out, str(python.value))
    assert expected in result.out["message"]
