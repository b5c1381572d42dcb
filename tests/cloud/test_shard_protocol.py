"""The aggregator-only messages of a sharded aggregator: claims parse or are refused by name; $share filters route."""

from __future__ import annotations

import json

import pytest

from cloud.shard_protocol import Claim, ShardTopics, closed_notice, open_notice
from edge.mqtt_session import shared_subscription_filter
from edge.topics import FleetTopics


def test_claim_round_trips() -> None:
    claim = Claim(3, "meter-7", "ab" * 32, 40)
    assert Claim.from_json(claim.to_json()) == claim


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"round": 1, "device": "d"}).encode(), "lacks or garbles"),
    (json.dumps({"round": "x", "device": "d", "digest": "ab" * 32, "examples": 3}).encode(), "lacks or garbles"),
    (json.dumps({"round": 1, "device": "d", "digest": "short", "examples": 3}).encode(), "sha256 hex"),
    (json.dumps({"round": 1, "device": "d", "digest": "ab" * 32, "examples": 0}).encode(), "positive example count"),
])
def test_malformed_claim_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Claim.from_json(payload)


def test_shared_subscription_delivers_on_the_real_topic() -> None:
    shared = ShardTopics("f").shared_updates(FleetTopics("f").all_updates)
    assert shared == "$share/f-aggregators/dmskd/f/round/+/update/+"
    assert shared_subscription_filter(shared) == "dmskd/f/round/+/update/+"
    assert shared_subscription_filter("dmskd/f/status/+") == "dmskd/f/status/+"


def test_notices_name_round_epoch_and_grants_in_order() -> None:
    opened = json.loads(open_notice(2, 2, ("b", "a"), epoch=1))
    assert (opened["state"], opened["round"], opened["epoch"], opened["cohort"]) == ("open", 2, 1, ["b", "a"])
    closed = json.loads(closed_notice(2, {"w1": ["z", "y"], "w0": ["x"]}))
    assert list(closed["granted"]) == ["w0", "w1"] and closed["granted"]["w1"] == ["y", "z"]
