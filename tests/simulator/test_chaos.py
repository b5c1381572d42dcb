"""The chaos benchmark: its scoring of lost and invalid updates, and one fault end to end against mosquitto."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from simulator.broker import mosquitto_binary
from simulator.chaos import DeviceRun, Score, deadline_rounds, rounds_done, score, seconds_per_round, verdict

FLEET = ("d0", "d1", "d2")


def _history(*accepted: list[str], seconds: float = 0.1) -> list[dict]:
    return [{"round": r, "accepted": a, "seconds": seconds} for r, a in enumerate(accepted)]


def test_rounds_done_reads_the_device_s_final_line_and_nothing_else():
    out = "INFO: delegate\nd0: rounds done [0, 2, 3]\nd10: rounds done [1]\n"
    assert rounds_done(out, "d0") == frozenset({0, 2, 3})
    assert rounds_done(out, "d10") == frozenset({1})
    assert rounds_done("d1: rounds done []\n", "d1") == frozenset()
    assert rounds_done(out, "d1") is None  # killed, or never got that far


def test_a_clean_run_scores_nothing_lost_and_nothing_invalid():
    history = _history(list(FLEET), list(FLEET))
    runs = [DeviceRun(d, frozenset({0, 1})) for d in FLEET]
    assert score(history, FLEET, runs) == Score(2, (), ())


def test_an_update_a_surviving_device_trained_but_the_round_did_not_accept_is_lost():
    history = _history(list(FLEET), ["d0", "d2"])
    runs = [DeviceRun(d, frozenset({0, 1})) for d in FLEET]
    assert score(history, FLEET, runs).lost == ((1, "d1"),)


def test_rounds_the_history_never_completed_lose_nothing_and_count_as_missing():
    runs = [DeviceRun(d, frozenset({0, 1, 2})) for d in FLEET]
    s = score(_history(list(FLEET)), FLEET, runs)
    assert (s.completed, s.lost) == (1, ())
    assert verdict(3, s, (), 1.0, 0.0) == "FAIL: 2 rounds missing"


def test_a_killed_device_loses_nothing_but_cannot_be_accepted_after_the_round_it_died_in():
    history = _history(list(FLEET), list(FLEET), ["d1", "d2", "d0"])
    runs = [DeviceRun("d0", None, last_round=1), DeviceRun("d1", frozenset({0, 1, 2})),
            DeviceRun("d2", frozenset({0, 1, 2}))]
    s = score(history, FLEET, runs)
    assert s.lost == ()
    assert s.invalid == ((2, "d0", "the device was killed in round 1"),)


def test_strangers_doubles_and_rounds_a_device_did_not_train_are_invalid_acceptances():
    history = _history(["d0", "intruder"], ["d1", "d1"], ["d2"])
    runs = [DeviceRun("d0", frozenset({0})), DeviceRun("d1", frozenset({1})), DeviceRun("d2", frozenset())]
    s = score(history, FLEET, runs)
    assert s.invalid == ((0, "intruder", "not a device of the fleet"), (1, "d1", "accepted twice in one round"),
                         (2, "d2", "the device did not train this round"))
    assert verdict(3, s, (), None, None) == "FAIL: 3 invalid accepted"


def test_seconds_per_round_spans_round_0_s_opening_to_the_last_close():
    history = _history(list(FLEET), list(FLEET), list(FLEET), seconds=1.0)
    assert seconds_per_round(history, [10.0, 12.0, 15.0]) == pytest.approx((15.0 - 9.0) / 3)
    assert seconds_per_round(history, [10.0]) is None
    assert seconds_per_round([], []) is None


def test_verdict_names_deadline_rounds_slowness_and_memory_growth():
    history = [{"round": 0, "accepted": [], "seconds": 19.8}, {"round": 1, "accepted": [], "seconds": 0.1}]
    assert deadline_rounds(history, 20.0) == (0,)
    ok = Score(2, (), ())
    assert verdict(2, ok, (), 1.5, 10.0) == "ok"
    assert verdict(2, ok, (0,), 3.0, 80.0) == ("slow/grew: round 0 waited for the deadline; 3.0x clean time; "
                                               "RSS +80 MB over clean")


@pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto (apt-get install mosquitto)")
def test_kill_9_of_the_aggregator_mid_round_loses_no_update(tiny_config, tiny_cloud, tmp_path):
    """The benchmark's kill-aggregator fault at 3 devices x 3 rounds: real processes, the table's scoring."""
    pytest.importorskip("psutil")
    from tqdm import tqdm

    from cloud.fleet_bundle import save_bundle
    from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_signing_keypair
    from simulator.chaos_command import FAULTS, run_fault
    from simulator.chaos_fleet import Prepared
    from simulator.federation import fleet_bundle

    config = dataclasses.replace(tiny_config, rounds=3)
    root = tmp_path / "prepared"
    bundle = fleet_bundle(config, tiny_cloud, 0.0, fleet="chaos-test")
    save_bundle(root / "bundle", bundle)
    write_signing_keypair(root / PRIVATE_KEY_FILE, root / PUBLIC_KEY_FILE)
    (root / "devices").mkdir()
    for plan, data in zip(bundle.plans, tiny_cloud.split.devices):
        np.savez(root / "devices" / f"{plan.device}.npz", x=data.x, y=data.y)
    fault = next(f for f in FAULTS if f.name == "kill-aggregator")
    args = argparse.Namespace(out=tmp_path / "out", deadline=20.0)
    with tqdm(total=3, disable=True) as bar:
        row, detail = run_fault(args, Prepared.from_dir(root), fault, None, bar)
    assert detail["notes"]["killed_at"] == "first update chunk of round 2"
    assert (row.completed, row.lost, row.invalid) == (3, 0, 0), detail
    assert all(trained == [0, 1, 2] for trained in detail["trained"].values()), detail
    assert row.verdict.startswith(("ok", "slow")), row
