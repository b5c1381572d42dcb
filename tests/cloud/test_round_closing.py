"""When a round closes: quorum of the cohort, every online device answered, or the deadline."""

from __future__ import annotations

import pytest

from cloud.round_closing import OFFLINE, ONLINE, DeviceLiveness, RoundPolicy, close_reason

COHORT = ("a", "b", "c", "d")


def test_a_round_waits_while_an_online_cohort_device_has_not_answered():
    assert close_reason(RoundPolicy(), COHORT, {"a", "b", "c"}, set(), elapsed_s=5.0) is None


def test_a_round_closes_once_every_device_still_online_has_answered():
    assert close_reason(RoundPolicy(), COHORT, {"a", "b", "c"}, {"d"}, elapsed_s=0.1) == \
        "every cohort device still online has answered"


def test_a_round_closes_on_the_quorum_fraction_of_its_cohort():
    policy = RoundPolicy(quorum_fraction=0.5)
    assert policy.quorum(4) == 2 and policy.quorum(5) == 3 and policy.quorum(1) == 1
    assert close_reason(policy, COHORT, {"a", "b"}, set(), elapsed_s=0.0) == "quorum reached"
    assert close_reason(policy, COHORT, {"a"}, set(), elapsed_s=0.0) is None


def test_a_round_closes_at_its_deadline_whoever_is_missing():
    policy = RoundPolicy(deadline_s=30.0)
    assert close_reason(policy, COHORT, set(), set(), elapsed_s=29.9) is None
    assert close_reason(policy, COHORT, set(), set(), elapsed_s=30.0) == "deadline"


def test_an_empty_cohort_closes_at_once():
    assert close_reason(RoundPolicy(), (), set(), set(), elapsed_s=0.0) == "empty cohort"


def test_a_fleet_gone_offline_with_nothing_accepted_waits_for_the_deadline_rather_than_burn_rounds():
    policy = RoundPolicy(deadline_s=60.0)
    assert close_reason(policy, COHORT, set(), set(COHORT), elapsed_s=30.0) is None
    assert close_reason(policy, COHORT, set(), set(COHORT), elapsed_s=60.0) == "deadline"


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_rejects_a_quorum_fraction_outside_zero_to_one(fraction):
    with pytest.raises(ValueError, match="--quorum"):
        RoundPolicy(quorum_fraction=fraction)


@pytest.mark.parametrize("deadline", [0.0, -1.0, float("inf")])
def test_rejects_a_deadline_that_is_not_a_positive_number(deadline):
    with pytest.raises(ValueError, match="--deadline"):
        RoundPolicy(deadline_s=deadline)


def test_liveness_follows_a_device_offline_and_back_online():
    live = DeviceLiveness(frozenset(COHORT))
    assert live.observe("a", OFFLINE) == OFFLINE and live.offline == {"a"}
    assert live.observe("a", OFFLINE) is None  # no change
    assert live.observe("a", ONLINE) == ONLINE and live.offline == set()
    assert live.observe("a", ONLINE) == ONLINE  # every announcement: it may need what a broker lost


def test_liveness_stores_nothing_for_names_outside_the_plan_or_unknown_payloads():
    live = DeviceLiveness(frozenset(COHORT))
    for i in range(1000):
        assert live.observe(f"stranger-{i}" * 50, OFFLINE) is None
    assert live.observe("a", b"gone fishing") is None
    assert live.offline == set()


def test_a_device_never_heard_from_is_waited_for_only_its_grace_once_an_update_arrived():
    policy = RoundPolicy(unheard_grace_s=15.0)
    heard = {"a", "b", "c"}
    assert close_reason(policy, COHORT, {"a", "b", "c"}, set(), 14.9, heard) is None
    assert close_reason(policy, COHORT, {"a", "b", "c"}, set(), 15.0, heard) is not None


def test_with_nothing_accepted_a_round_waits_for_unheard_devices_until_its_deadline():
    policy = RoundPolicy(unheard_grace_s=15.0, deadline_s=60.0)
    assert close_reason(policy, COHORT, set(), set(), 30.0, heard=set()) is None
    assert close_reason(policy, COHORT, set(), set(), 60.0, heard=set()) == "deadline"


def test_a_heard_device_that_looks_online_is_waited_for_until_the_deadline():
    policy = RoundPolicy(unheard_grace_s=15.0, deadline_s=60.0)
    assert close_reason(policy, COHORT, {"a", "b", "c"}, set(), 30.0, heard=set(COHORT)) is None


def test_liveness_remembers_who_was_ever_heard_from():
    live = DeviceLiveness(frozenset(COHORT))
    live.observe("a", ONLINE)
    live.observe("b", OFFLINE)
    live.observe("stranger", ONLINE)
    assert live.heard == {"a", "b"}
