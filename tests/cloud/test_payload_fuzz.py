"""Property-based fuzzing of the wire decoder and RoundInbox (simulator.payload_fuzz), deterministic.

Hypothesis drives the same mutations as the benchmark (scripts/fuzz_round_inbox.py) over the seeds of
simulator.malformed_updates; the properties: nothing but PayloadRejected escapes `decode_update`,
nothing escapes `RoundInbox.offer`, every refusal is one sanitised record with a known reason, and
every accepted update is valid by an oracle that judges the bytes, not the inbox's code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

import cloud.round_inbox
from cloud.rejections import RejectionReason
from edge.update_quantization import dequantize_update
from edge.wire import UINT8_AFFINE_DELTA, encode_update
from simulator import malformed_updates as mu
from simulator.payload_fuzz import HONEST_SEEDS, Payload, Seed, check, fuzz, generate, seeds


def fuzz_settings(examples: int) -> settings:
    """Deterministic (derandomized, no example database), untimed, `examples` payloads."""
    return settings(derandomize=True, max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class DataChooser:
    """The fuzzer's choices drawn from Hypothesis, so that it can shrink what fails."""

    def __init__(self, data: DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def raw(self, size: int) -> bytes:
        return self.data.draw(st.binary(min_size=size, max_size=size))


def assert_holds(payload: Payload) -> None:
    outcome = check(payload)
    assert not outcome.violation, (payload.seed.name, payload.mutations, payload.topic_device[:40],
                                   payload.topic_round, outcome)


@fuzz_settings(2_500)
@given(st.data())
def test_mutated_seeds_raise_only_payload_rejected_and_admit_nothing_invalid(data: DataObject) -> None:
    assert_holds(generate(DataChooser(data)))


@fuzz_settings(1_000)
@given(st.binary(max_size=512), st.sampled_from(["d0", "intruder", mu.LONG_NAME]), st.sampled_from([mu.ROUND, 0]))
def test_random_bytes_are_refused_with_a_reason(blob: bytes, device: str, round_: int) -> None:
    outcome = check(Payload(seeds()[0], blob, device, round_, ("random_bytes",)))
    assert outcome.verdict == "rejected" and outcome.reason is not None, outcome


metadata_values = st.one_of(st.text(max_size=20), st.sampled_from(["5", "4", "d0", "f1", "none", "1.0", "0.0", "40"]))


@fuzz_settings(1_000)
@given(st.dictionaries(st.sampled_from(["fleet", "device", "round", "base_version", "num_examples", "clip",
                                        "noise_multiplier", "dp_mode", "encoding", "training", "protocol",
                                        "kind", "checksum", "update_id"]) | st.text(max_size=8),
                       metadata_values, max_size=14),
       st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(0, 3))
def test_arbitrary_metadata_on_honest_tensors_is_judged_by_the_same_properties(metadata: dict[str, str],
                                                                             value: float, where: int) -> None:
    tensors = mu.valid_tensors()
    tensors["dense_0/bias"] = tensors["dense_0/bias"].copy()
    tensors["dense_0/bias"][where] = value
    honest = {k: str(v) for k, v in mu.valid_meta().__dict__.items()}
    blob = mu.raw_blob(tensors, **{**honest, **metadata})
    assert_holds(Payload(seeds()[0], blob, "d0", mu.ROUND, ("metadata",)))


def test_the_seeded_fuzzer_reaches_every_admission_check_without_a_violation() -> None:
    stats = fuzz(3_000, seed=0)
    assert stats.payloads == 3_000 and not stats.violations, stats.violations[:3]
    assert stats.verdicts["accepted"] > 50
    reached = set(stats.reasons)
    expected = {r.value for r in RejectionReason} - {"chunk_rejected", "between_rounds", "replay", "example_count"}
    assert expected <= reached, expected - reached


def test_the_fuzzer_is_reproducible_for_a_seed() -> None:
    assert fuzz(300, seed=5).reasons == fuzz(300, seed=5).reasons


def test_honest_seeds_are_accepted_and_every_case_seed_is_rejected() -> None:
    for seed in seeds():
        outcome = check(Payload(seed, seed.blob, seed.topic_device, seed.topic_round, ()))
        assert outcome.verdict == ("accepted" if seed in seeds()[:HONEST_SEEDS] else "rejected"), (seed.name, outcome)


def test_the_oracle_catches_an_inbox_that_lets_infinity_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the finiteness check after dequantising, an unbounded 8-bit round accepted infinities."""
    monkeypatch.setattr(cloud.round_inbox, "decoded_delta",
                        lambda t, e, template=None: dequantize_update(t) if e == UINT8_AFFINE_DELTA else t)
    seed = Seed("overflow", mu.uint8_overflowing(), inbox=mu.unbounded_uint8_inbox)
    with np.errstate(over="ignore"):
        outcome = check(Payload(seed, seed.blob, "d0", mu.ROUND, ()))
    assert outcome.verdict == "invalid" and "finite False" in outcome.note, outcome


def test_the_oracle_catches_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise KeyError("checksum")

    monkeypatch.setattr(cloud.round_inbox, "decode_update", broken)
    seed = seeds()[0]
    outcome = check(Payload(seed, encode_update(mu.valid_tensors(), mu.valid_meta()), "d0", mu.ROUND, ()))
    assert outcome.verdict == "crash" and "KeyError" in outcome.note
