"""report.md: the wire rows against the bits x parameters limit, and a device table that stays readable."""

from __future__ import annotations

from simulator.report import DEVICES_LISTED, device_table, wire_rows


def test_wire_rows_give_bytes_against_the_limit_and_how_the_fleet_was_sampled() -> None:
    m = {"update_bits": 8, "update_bytes_limit": 4810.0, "update_bytes_per_device_round": 5261.0,
         "student_parameters": 4810, "model_bits": 8, "model_bytes_limit": 4810.0, "model_step_bytes": 5378.0,
         "sampling_rate": 0.25, "device_sampling": {"scheme": "pool", "samples_per_device": 32}}
    rows = wire_rows(m)
    assert rows[0].endswith("(4,810 parameters x bits) | 8 / 5,261 / 4,810 (1.094x) |")
    assert rows[1].endswith("| 8 / 5,378 / 4,810 (1.118x) |")
    assert "| devices sampled per round (q) | 0.25 |" in rows
    assert "| device data | pool, 32 samples per device |" in rows


def test_metrics_of_an_older_run_give_no_wire_rows() -> None:
    assert wire_rows({"devices": 3}) == []


def test_a_small_fleet_lists_every_device_and_a_large_one_groups_them_by_shard_and_flops() -> None:
    small = {f"dev{i:03d}": 100 for i in range(3)}
    assert device_table(small, {d: "p1" for d in small})[2:] == [f"| dev{i:03d} | p1 | 100 |" for i in range(3)]
    large = {f"dev{i:04d}": (100 if i < 10 else 900) for i in range(DEVICES_LISTED + 1)}
    plan = {d: ("p1" if f == 100 else "p2") for d, f in large.items()}
    table = device_table(large, plan)
    assert table[2:] == ["| p1 | 100 | 10 | dev0000, dev0009 |",
                         f"| p2 | 900 | {DEVICES_LISTED - 9} | dev0010, dev0050 |"]
