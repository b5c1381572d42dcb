"""Every named malformed update (simulator.malformed_updates.CASES) is refused with exactly its reason code."""

from __future__ import annotations

import pytest

from cloud.rejections import RejectionReason
from simulator.malformed_updates import CASES, ROUND, MalformedCase, make_inbox, offer_case, valid_blob


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_update_is_refused_with_exactly_its_reason(case: MalformedCase) -> None:
    inbox, result = offer_case(case)
    accepted_before = {device for device, _ in case.before}

    assert result is None
    assert set(inbox.accepted) == accepted_before  # the round is not corrupted
    assert inbox.rejected.counts == {case.reason: 1}, inbox.rejected.sample
    (record,) = inbox.rejected.sample
    assert record.reason is case.reason
    assert case.detail in record.detail, record.detail


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_base_update_is_accepted_so_each_case_breaks_exactly_one_thing() -> None:
    inbox = make_inbox()
    update = inbox.offer("d0", ROUND, valid_blob())
    assert update is not None and update.device == "d0" and update.num_examples == 40
    assert inbox.rejected.total == 0


def test_every_admission_reason_has_a_case() -> None:
    offered = {c.reason for c in CASES}
    not_offers = {RejectionReason.CHUNK_REJECTED, RejectionReason.BETWEEN_ROUNDS}  # found before an offer
    assert offered == set(RejectionReason) - not_offers
