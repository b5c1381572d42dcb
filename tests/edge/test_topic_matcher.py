"""edge.mqtt_session.topic_matcher decides as paho's topic_matches_sub on every filter and topic tried."""

from __future__ import annotations

import itertools
import random

import paho.mqtt.client as mqtt
import pytest

from edge.mqtt_session import topic_matcher

LEVELS = ["a", "b", "", "$SYS", "dmskd", "+", "#"]


def _filters() -> list[str]:
    """Every filter of up to 4 levels over LEVELS with '#' only last (where MQTT allows it)."""
    out = []
    for n in range(1, 5):
        for levels in itertools.product(LEVELS, repeat=n):
            if "#" not in levels[:-1]:
                out.append("/".join(levels))
    return out


def _topics(rng: random.Random, count: int) -> list[str]:
    names = ["a", "b", "", "$SYS", "dmskd", "c"]
    return ["/".join(rng.choice(names) for _ in range(rng.randint(1, 5))) for _ in range(count)]


def test_matches_exactly_where_paho_does():
    rng = random.Random(0)
    topics = _topics(rng, 60) + ["a", "a/b", "$SYS/a", "dmskd/fleet/model-step/3", "/"]
    for topic_filter in _filters():
        matches = topic_matcher(topic_filter)
        for topic in topics:
            assert matches(topic) == mqtt.topic_matches_sub(topic_filter, topic), (topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("dmskd/f/round/+/update/dev7", "dmskd/f/round/3/update/dev7", True),
    ("dmskd/f/round/+/update/dev7", "dmskd/f/round/3/update/dev70", False),
    ("dmskd/f/cohort/dev7/+", "dmskd/f/cohort/dev7/0", True),
    ("dmskd/f/#", "dmskd/f", True),
    ("#", "$SYS/broker/load", False),
    ("dmskd/f/model-step/+", "dmskd/f/model-step/3/extra", False),
])
def test_the_fleet_topic_shapes(topic_filter, topic, expected):
    assert topic_matcher(topic_filter)(topic) is expected
