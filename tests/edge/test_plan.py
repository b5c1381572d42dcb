"""Device plans travel as JSON and every malformed plan is refused with a message naming why."""

from __future__ import annotations

import json

import pytest

from edge.plan import DevicePlan, TrainingSettings

TRAINING = TrainingSettings(alpha=0.6, tau=3.0, lr=0.02, local_epochs=3, batch_size=8, clip=0.8)
PLAN = DevicePlan(fleet="f1", device="meter-7", shard_id="P2", shard_hash="ab12cd34ef56ab78",
                  student_hash="0011223344556677", rounds=20, dp_mode="central", noise_multiplier=1.1,
                  training=TRAINING)
TRAINING_FIELDS = set(TrainingSettings.__dataclass_fields__)


def _raw(**changes) -> bytes:
    """The plan's JSON with fields changed (None removes one); training fields go into "training"."""
    raw = json.loads(PLAN.to_json())
    for key, value in changes.items():
        target = raw["training"] if key in TRAINING_FIELDS else raw
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    return json.dumps(raw).encode()


def test_plan_carries_its_training_settings_nested_and_back() -> None:
    raw = json.loads(PLAN.to_json())
    assert raw["training"] == {"alpha": 0.6, "tau": 3.0, "lr": 0.02, "local_epochs": 3, "batch_size": 8, "clip": 0.8}
    assert DevicePlan.from_json(PLAN.to_json()).training == TRAINING
    assert PLAN.clip == 0.8


def test_a_plan_without_training_settings_takes_the_one_set_of_defaults() -> None:
    raw = json.loads(PLAN.to_json())
    del raw["training"]
    assert DevicePlan.from_json(json.dumps(raw).encode()).training == TrainingSettings()


def test_plan_rejects_unknown_training_field_by_name() -> None:
    raw = json.loads(PLAN.to_json())
    raw["training"]["momentum"] = 0.9
    with pytest.raises(ValueError, match=r"meter-7.*unknown fields \['momentum'\]"):
        DevicePlan.from_json(json.dumps(raw).encode())


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
    ({"clip": 0.0}, "clip must be a positive number"),
    ({"rounds": 0}, "rounds >= 1"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"local_epochs": 2.5}, "'local_epochs' must be int"),
], ids=["zero-clip", "zero-rounds", "alpha-above-one", "zero-batch", "fractional-epochs"])
def test_plan_rejects_out_of_range_values_naming_the_device(changes: dict, words: str) -> None:
    with pytest.raises(ValueError, match=f"meter-7.*{words}"):
        DevicePlan.from_json(_raw(**changes))


def test_plan_carries_the_labelled_fraction_and_refuses_one_outside_zero_to_one() -> None:
    meter = DevicePlan.from_json(_raw(labelled_fraction=0.0))
    assert meter.labelled_fraction == 0.0 and DevicePlan.from_json(meter.to_json()) == meter
    with pytest.raises(ValueError, match=r"meter-7: labelled_fraction must be in \[0, 1\], got 1.5"):
        DevicePlan.from_json(_raw(labelled_fraction=1.5))
