"""Per-round byte counts from the devices' traffic: steps share one topic and are counted by arrival."""

from __future__ import annotations

from edge.mqtt_session import TrafficRecord
from simulator.traffic import traffic_summary


def test_each_devices_steps_fall_in_rounds_one_onwards_and_the_final_one_in_none():
    root = "dmskd/f"

    def device(model0: int, steps: list[int]) -> list[TrafficRecord]:
        records = [TrafficRecord("down", f"{root}/model/0", model0)]
        for r, nbytes in enumerate(steps):
            records.append(TrafficRecord("up", f"{root}/round/{r}/update/d", 100 + r))
            records.append(TrafficRecord("down", f"{root}/step", nbytes))
        return records

    summary = traffic_summary({"a": device(19_000, [5_000, 5_001, 5_002]),
                               "b": device(19_000, [4_000, 4_001, 4_002])}, rounds=3)
    assert summary["bytes_down_per_round"] == [38_000, 9_000, 9_002]  # the step after round 2: no round's
    assert summary["bytes_up_per_round"] == [200, 202, 204]
