"""Rejection records: a fixed reason vocabulary, names and details truncated and escaped, counts without bound
in bounded memory, and a round flooded with 10,000 rejections recorded in a few kilobytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloud.checkpoint import save_checkpoint
from cloud.rejections import (
    MARKER_CHARS,
    MAX_DETAIL_CHARS,
    MAX_DEVICE_CHARS,
    SAMPLE_LIMIT,
    Rejection,
    RejectionLog,
    RejectionReason,
    rejected_total,
    sanitise,
    sanitise_device,
)
from cloud.round_engine import EngineConfig, RoundEngine, state_to_json
from edge import wire
from edge.wire import UpdateMeta, encode_update

R = RejectionReason


def one_line_ascii(text: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in text)


def test_printable_ascii_is_kept_as_is() -> None:
    assert sanitise("device-07 (rack 3): ok", 64) == "device-07 (rack 3): ok"


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("tab\there", "tab\\there"), ("\x1b[2J", "\\x1b[2J"),
    ("nul\x00", "nul\\x00"), ("caf\u00e9", "caf\\xe9"), ("\u202eevil", "\\u202eevil"), ("\U0001f600", "\\U0001f600"),
    ("back\\slash", "back\\\\slash"), ("del\x7f", "del\\x7f"),
])
def test_control_and_non_ascii_characters_are_escaped_unambiguously(raw: str, shown: str) -> None:
    assert sanitise(raw, 64) == shown


def test_a_long_name_is_cut_with_a_marker_of_how_many_characters_went() -> None:
    name = "x" * 7_944
    shown = sanitise_device(name)
    assert shown == "x" * MAX_DEVICE_CHARS + f"...[+{7_944 - MAX_DEVICE_CHARS} chars]"


def test_escapes_count_towards_the_limit_and_are_never_split() -> None:
    shown = sanitise("\n" * 100, 9)
    assert shown == "\\n" * 4 + "...[+96 chars]"


@pytest.mark.parametrize("raw", ["\n" * 10_000, "\U0001f600" * 5_000, "a\x00" * 4_000, "x" * 100_000])
def test_sanitised_text_is_one_printable_line_within_its_bound(raw: str) -> None:
    for limit in (MAX_DEVICE_CHARS, MAX_DETAIL_CHARS):
        shown = sanitise(raw, limit)
        assert one_line_ascii(shown) and len(shown) <= limit + MARKER_CHARS


def test_a_record_is_sanitised_when_made() -> None:
    record = Rejection.of("d\n" * 50, R.MALFORMED_PAYLOAD, "bad\x1b" * 100)
    assert one_line_ascii(record.device) and len(record.device) <= MAX_DEVICE_CHARS + MARKER_CHARS
    assert one_line_ascii(record.detail) and len(record.detail) <= MAX_DETAIL_CHARS + MARKER_CHARS


def test_the_log_counts_every_rejection_and_keeps_only_the_first_records() -> None:
    log = RejectionLog()
    for i in range(100):
        log.record(f"dev{i}", R.NOT_IN_COHORT if i % 4 else R.REPLAY, f"detail {i}")
    assert log.total == len(log) == 100
    assert log.counts == {R.NOT_IN_COHORT: 75, R.REPLAY: 25}
    assert log.count(R.WRONG_FLEET) == 0
    assert [r.device for r in log.sample] == [f"dev{i}" for i in range(SAMPLE_LIMIT)]
    assert log.last == Rejection("dev99", R.NOT_IN_COHORT, "detail 99")
    assert log.breakdown() == "not_in_cohort 75, replay 25"


def test_an_empty_log_is_falsy_and_has_no_breakdown() -> None:
    assert not RejectionLog() and RejectionLog().breakdown() == ""


def test_json_round_trip_keeps_counts_and_sample() -> None:
    log = RejectionLog()
    for i in range(40):
        log.record(f"n\n{i}", R.WRONG_SHAPE if i % 2 else R.NORM_BOUND, "x" * 300)
    raw = json.loads(json.dumps(log.to_json()))
    assert raw["total"] == 40 and raw["counts"] == {"wrong_shape": 20, "norm_bound": 20}
    assert RejectionLog.from_json(raw) == log


def test_a_checkpointed_sample_is_bounded_and_sanitised_again_on_load() -> None:
    forged = {"total": 1, "counts": {"replay": 1},
              "sample": [["n" * 9_000 + "\n", "replay", "d" * 9_000]] * 1_000}
    log = RejectionLog.from_json(forged)
    assert len(log.sample) == SAMPLE_LIMIT
    assert all(one_line_ascii(r.device) and len(r.device) <= MAX_DEVICE_CHARS + MARKER_CHARS for r in log.sample)
    assert all(len(r.detail) <= MAX_DETAIL_CHARS + MARKER_CHARS for r in log.sample)


@pytest.mark.parametrize(("raw", "message"), [
    ([["d0", "NaN"]], "must be an object"),
    ({"counts": {"made_up": 3}, "sample": []}, "unknown rejection reason 'made_up'"),
    ({"counts": {"replay": -1}, "sample": []}, "non-negative integer"),
    ({"counts": {}, "sample": [["d0", "replay"]]}, "[device, reason, detail]"),
])
def test_malformed_rejection_json_is_refused_naming_the_problem(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RejectionLog.from_json(raw)


def test_an_unknown_reason_code_from_a_decoder_counts_as_malformed() -> None:
    assert RejectionReason.parse("not_a_reason") is R.MALFORMED_PAYLOAD
    assert RejectionReason.parse("wrong_shape") is R.WRONG_SHAPE


def test_every_reason_code_the_wire_decoder_raises_is_in_the_vocabulary() -> None:
    codes = {wire.MALFORMED_PAYLOAD, wire.WRONG_ENCODING, wire.WRONG_SHAPE}
    assert codes <= {r.value for r in RejectionReason}
    assert wire.PayloadRejected("x").reason == R.MALFORMED_PAYLOAD


def test_rejected_total_reads_new_and_older_history_entries() -> None:
    assert rejected_total({"rejected": {"total": 7, "counts": {"replay": 7}, "sample": []}}) == 7
    assert rejected_total({"rejected": [["d2", "NaN"], ["d3", "truncated"]]}) == 2  # checkpoints before the log
    assert rejected_total({}) == 0


# --- a flooded round: the record, the history and the checkpoint stay small ---

DEVICES = ("d0", "d1", "d2")
WEIGHTS = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}


def long_name(i: int) -> str:
    return f"evil-{i}\n" + "A" * 8_000 + "\r\n\x1b[31m"


def flood_record():
    """Round 0 of a 3-device fleet that got 10,000 rejections with 8,000-character names, and 2 valid updates."""
    engine = RoundEngine(EngineConfig("f", DEVICES, 3, insecure_seeded_noise=True))
    state = engine.init(WEIGHTS, np.random.SeedSequence(0))
    opened = engine.open_round(state)
    inbox = opened.inbox

    def blob(device: str, meta_device: str | None = None) -> bytes:
        meta = UpdateMeta("f", meta_device or device, 0, 0, 10, 1.0, 0.0, "none")
        return encode_update({k: np.full(v.shape, 0.1, np.float32) for k, v in WEIGHTS.items()}, meta)

    impostor = blob("d2", meta_device=long_name(0))
    for i in range(7_000):
        inbox.offer(long_name(i), 0, b"")
    for _ in range(2_000):
        inbox.offer("d2", 0, impostor)
    for i in range(1_000):
        inbox.reject(long_name(i), R.CHUNK_REJECTED, "chunk of " + long_name(i) * 3)
    inbox.offer("d0", 0, blob("d0"))
    inbox.offer("d1", 0, blob("d1"))
    return engine, engine.apply(state, opened)


def test_a_flood_of_10000_rejections_is_counted_exactly_and_recorded_in_a_few_kilobytes() -> None:
    _, (new, record) = flood_record()
    assert record.accepted == ("d0", "d1")
    assert len(record.rejected) == 10_000
    assert record.rejected.counts == {R.NOT_IN_COHORT: 7_000, R.WRONG_DEVICE: 2_000, R.CHUNK_REJECTED: 1_000}
    entry = new.history[-1]
    assert entry["rejected"]["total"] == 10_000 and rejected_total(entry) == 10_000
    assert entry["rejected"]["counts"] == {"not_in_cohort": 7_000, "wrong_device": 2_000, "chunk_rejected": 1_000}
    assert len(json.dumps(entry)) < 12_000  # the flood itself is ~80 MB of names


def test_every_name_and_detail_in_a_flooded_record_is_truncated_and_escaped() -> None:
    _, (new, record) = flood_record()
    sample = new.history[-1]["rejected"]["sample"]
    assert len(sample) == len(record.rejected.sample) == SAMPLE_LIMIT
    for device, reason, detail in sample:
        assert reason in {r.value for r in RejectionReason}
        assert one_line_ascii(device) and len(device) <= MAX_DEVICE_CHARS + MARKER_CHARS
        assert one_line_ascii(detail) and len(detail) <= MAX_DETAIL_CHARS + MARKER_CHARS
        assert device.startswith("evil-") and "\\n" in device and "chars]" in device


def test_a_flooded_round_checkpoints_within_a_few_kilobytes_of_a_clean_one(tmp_path: Path) -> None:
    engine, (flooded, _) = flood_record()
    clean_engine = RoundEngine(EngineConfig("f", DEVICES, 3, insecure_seeded_noise=True))
    clean = clean_engine.init(WEIGHTS, np.random.SeedSequence(0))
    opened = clean_engine.open_round(clean)
    clean, _ = clean_engine.apply(clean, opened)
    sizes = {}
    for name, state in (("clean", clean), ("flooded", flooded)):
        save_checkpoint(tmp_path / name, state.weights, state_to_json(state, engine.config))
        sizes[name] = (tmp_path / name / "state.json").stat().st_size
    assert sizes["flooded"] - sizes["clean"] < 12_000, sizes
    saved = json.loads((tmp_path / "flooded" / "state.json").read_text())
    log = RejectionLog.from_json(saved["history"][0]["rejected"])
    assert log.counts == {R.NOT_IN_COHORT: 7_000, R.WRONG_DEVICE: 2_000, R.CHUNK_REJECTED: 1_000}
