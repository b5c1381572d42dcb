"""The firmware C array holds exactly the model's bytes, aligned, with its length."""

from __future__ import annotations

import numpy as np
import pytest

from export.c_array import c_identifier, model_data_header, model_data_source, parse_model_data_source
from export.quantize import convert_int8


@pytest.fixture(scope="module")
def model_bytes(tiny_teacher) -> bytes:
    return convert_int8(tiny_teacher.prefix(1), tiny_teacher.calibration_x, target="mcu", batch=1)


def test_generated_source_parses_back_to_the_model(model_bytes):
    source = model_data_source(model_bytes, "shard_p1")
    assert "alignas(16) const unsigned char shard_p1_model_data[] = {" in source
    assert f"const unsigned int shard_p1_model_data_len = {len(model_bytes)};" in source
    assert parse_model_data_source(source) == model_bytes


@pytest.mark.parametrize("size", [0, 1, 11, 12, 13, 1000])
def test_round_trip_for_any_length(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert parse_model_data_source(model_data_source(data, "blob")) == data


def test_header_declares_array_length_and_extra_constants():
    h = model_data_header("shard_p2", "constexpr unsigned int shard_p2_arena_size = 9216;")
    assert "extern const unsigned char shard_p2_model_data[];" in h
    assert "extern const unsigned int shard_p2_model_data_len;" in h
    assert "shard_p2_arena_size = 9216" in h
    assert h.count("#ifndef DMSKD_SHARD_P2_MODEL_DATA_H_") == 1


def test_truncated_or_foreign_source_is_rejected(model_bytes):
    source = model_data_source(model_bytes, "m")
    with pytest.raises(ValueError, match="declares"):
        parse_model_data_source(source.replace("0x", "0y", 3))
    with pytest.raises(ValueError, match="no `<name>_model_data"):
        parse_model_data_source("int main() {}")


def test_names_must_be_c_identifiers():
    assert c_identifier("shard_p1-v2") == "shard_p1_v2"
    assert c_identifier("1abc") == "_1abc"
    with pytest.raises(ValueError, match="C identifier"):
        model_data_source(b"\x00", "not-an-identifier")
