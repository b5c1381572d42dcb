"""Device plans travel as JSON and every malformed plan is refused with a message naming why."""

from __future__ import annotations

import json

import pytest

from edge.plan import DevicePlan

PLAN = DevicePlan(fleet="f1", device="meter-7", shard_id="P2", shard_hash="ab12cd34ef56ab78",
                  student_hash="0011223344556677", rounds=20, dp_mode="central", clip=0.8,
                  noise_multiplier=1.1, local_epochs=3, alpha=0.6, tau=3.0, lr=0.02)


def _raw(**changes) -> bytes:
    raw = json.loads(PLAN.to_json())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return json.dumps(raw).encode()


def test_plan_json_round_trip_is_equal() -> None:
    assert DevicePlan.from_json(PLAN.to_json()) == PLAN


def test_plan_json_is_stable_bytes() -> None:
    assert PLAN.to_json() == DevicePlan.from_json(PLAN.to_json()).to_json()


def test_plan_rejects_unknown_dp_mode_naming_the_mode_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"dp_mode 'loud'.*none.*local.*central"):
        DevicePlan.from_json(_raw(dp_mode="loud"))


def test_plan_rejects_unknown_field_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['shard_colour'\]"):
        DevicePlan.from_json(_raw(shard_colour="blue"))


def test_plan_rejects_missing_field_by_name() -> None:
    with pytest.raises(ValueError, match=r"missing.*'rounds'"):
        DevicePlan.from_json(_raw(rounds=None))


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe\x00", b""], ids=["broken", "not-utf8", "empty"])
def test_plan_rejects_non_json(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        DevicePlan.from_json(payload)


@pytest.mark.parametrize("payload", [b"42", b"null", b"[1, 2]", b'"plan"'], ids=["number", "null", "list", "string"])
def test_plan_rejects_json_that_is_not_an_object(payload: bytes) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        DevicePlan.from_json(payload)


@pytest.mark.parametrize("changes, words", [
    ({"clip": 0.0}, "clip must be > 0"),
    ({"rounds": 0}, "rounds >= 1"),
    ({"alpha": 1.5}, "0 <= alpha <= 1"),
], ids=["zero-clip", "zero-rounds", "alpha-above-one"])
def test_plan_rejects_out_of_range_values_naming_the_device(changes: dict, words: str) -> None:
    with pytest.raises(ValueError, match=f"meter-7.*{words}"):
        DevicePlan.from_json(_raw(**changes))
