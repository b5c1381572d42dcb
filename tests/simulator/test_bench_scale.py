"""bench-scale: its rows, tables and report, and a run that does not complete reported as such, for real.

Flower is not installed or run here: its venv setup (simulator/flower_env.py, a pip install of about 600 MB)
and simulator/flower_side.py need the Flower environment, so these tests cover the DMSKD side, the report
and the pinning of Flower outside requirements.txt; `python -m simulator bench-scale` runs the rest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simulator.__main__ import main
from simulator.bench_scale import (
    DMSKD,
    FLOWER,
    ScaleRow,
    dmskd_row,
    flower_row,
    merged_rows,
    peak_summary,
    ratio_table,
    report_markdown,
    rounds_failure,
    scale_table,
)
from simulator.flower_env import REQUIREMENTS, pinned_flwr
from simulator.watched_process import ProcessPeak, Watched, process_label, watch

REPO = Path(__file__).resolve().parents[2]


def _watched(returncode: int | None = 0, tail: tuple[str, ...] = ()) -> Watched:
    peaks = (ProcessPeak("python -m simulator run", 10, 800_000_000), ProcessPeak("mosquitto", 11, 9_000_000))
    return Watched(("python", "-m", "simulator", "run"), returncode, 42.0, 600.0, peaks, 809_000_000, tail)


def _history(accepted: list[int], seconds: float = 0.5) -> list[dict]:
    return [{"round": r, "accepted": [f"dev{i:03d}" for i in range(n)], "seconds": seconds, "accuracy": 0.9}
            for r, n in enumerate(accepted)]


def test_a_complete_run_reports_seconds_per_round_ms_per_device_round_and_bytes():
    metrics = {"history": _history([10, 10, 10]), "bytes_up_per_round": [200_000] * 3,
               "bytes_down_per_round": [100_000] * 3, "update_bytes_per_device_round": 20_159.0}
    row = dmskd_row(10, 3, _watched(), metrics, None)
    assert row.completed and row.seconds_per_round == 0.5 and row.ms_per_device_round == 50.0
    assert row.bytes_per_round == 300_000
    table = scale_table([row])
    assert "| DMSKD (MQTT, mosquitto) | 10 | yes | 0.500 | 50.00 |" in table
    assert "300,000" in table and "20,159" in table and "python -m simulator run 800 MB; mosquitto 9 MB" in table


def test_a_failed_run_keeps_the_rounds_its_checkpoint_recorded_and_says_why():
    row = dmskd_row(1000, 3, _watched(1, ("· federating", "error: broker went away")), None,
                    {"history": _history([1000], seconds=2.0)})
    assert not row.completed
    assert row.failure == "the run exited 1: error: broker went away"
    assert row.round_seconds == (2.0,) and row.ms_per_device_round == 2.0
    assert "did not complete: the run exited 1: error: broker went away | 2.000 | 2.00 |" in scale_table([row])


def test_a_timed_out_run_and_a_short_round_are_named():
    assert dmskd_row(10, 3, _watched(None), None, None).failure == "the run timed out after 600 s"
    assert rounds_failure(3, 10, [10, 10]) == "2 of 3 rounds closed"
    assert rounds_failure(3, 10, [10, 9, 8]) == "round 1 accepted 9 of 10 devices (2 rounds short)"
    assert rounds_failure(3, 10, [10, 10, 10]) is None


def test_flower_row_reads_the_figures_flower_side_writes_and_a_setup_failure():
    figures = {"round_seconds": [7.0, 0.2, 0.2], "accepted_per_round": [10, 10, 10],
               "accuracy_after_round": [0.95, 0.96, 0.961], "train_seconds_per_round": [0.5, 0.1, 0.1]}
    row = flower_row(10, 3, _watched(), figures)
    assert row.completed and row.accuracy == 0.961 and abs(row.steady_seconds_per_round - 0.2) < 1e-12
    assert "per round: 0.50 of 7.00 s, 0.10 of 0.20 s, 0.10 of 0.20 s" in report_markdown([row], {}, "bench")
    unset = flower_row(10, 3, None, None, "Flower setup failed: no python3.11")
    assert unset.failure == "Flower setup failed: no python3.11" and unset.seconds_per_round is None


def test_ratio_table_divides_flower_by_dmskd_per_round_overall_and_after_the_first_round():
    dmskd = ScaleRow(DMSKD, 10, 3, (0.2, 0.1, 0.1), (10, 10, 10), None)
    flower = ScaleRow(FLOWER, 10, 3, (7.0, 0.2, 0.2), (10, 10, 10), None)
    alone = ScaleRow(DMSKD, 100, 3, (0.5, 0.5, 0.5), (100, 100, 100), None)
    table = ratio_table([dmskd, flower, alone])
    assert "| 10 | 0.133 | 2.467 | 18.5x | 2.0x | yes |" in table
    assert "| 100 |" not in table  # Flower did not run at 100


def test_ratio_table_with_repeats_gives_the_median_ratio_and_its_range_over_paired_runs():
    rows = [ScaleRow(DMSKD, 1000, 2, (2.0, 2.0), (1000, 1000), None, repeat=0),
            ScaleRow(FLOWER, 1000, 2, (12.0, 8.0), (1000, 1000), None, repeat=0),
            ScaleRow(DMSKD, 1000, 2, (4.0, 4.0), (1000, 1000), None, repeat=1),
            ScaleRow(FLOWER, 1000, 2, (12.0, 12.0), (1000, 1000), None, repeat=1),
            ScaleRow(DMSKD, 1000, 2, (1.0, 1.0), (1000, 1000), None, repeat=2)]  # Flower's third run is missing
    table = ratio_table(rows)
    # ratios 5.0x and 3.0x (after the first round 4.0x and 3.0x); the unpaired third DMSKD run is left out
    assert "| 1,000 | 3.000 | 11.000 | 4.0x (3.0-5.0x over 2 runs) | 3.5x (3.0-4.0x over 2 runs) | yes |" in table
    assert "1,000 (run 2)" in scale_table(rows) and "1,000 (run 3)" in scale_table(rows)


def test_repeats_alternate_dmskd_and_flower_at_each_size(tmp_path, monkeypatch):
    from simulator import bench_scale_command

    order = []

    def fake_dmskd(args, devices, progress, repeat=0):
        order.append((DMSKD, devices, repeat))
        return ScaleRow(DMSKD, devices, args.rounds, (0.1,), (devices,), None, repeat=repeat)

    def fake_flower(args, devices, python, progress, repeat=0):
        order.append((FLOWER, devices, repeat))
        return ScaleRow(FLOWER, devices, args.rounds, (0.5,), (devices,), None, repeat=repeat)

    monkeypatch.setattr(bench_scale_command, "run_dmskd", fake_dmskd)
    monkeypatch.setattr(bench_scale_command, "run_flower_side", fake_flower)
    monkeypatch.setattr(bench_scale_command, "flower_python", lambda args, progress: (Path("python"), None))
    code = main(["bench-scale", "--sizes", "5", "--flower-sizes", "10", "--rounds", "1", "--repeats", "2",
                 "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert code == 0
    assert order == [(DMSKD, 5, 0), (DMSKD, 5, 1), (DMSKD, 10, 0), (FLOWER, 10, 0), (DMSKD, 10, 1), (FLOWER, 10, 1)]
    assert "5.0x (5.0-5.0x over 2 runs)" in (tmp_path / "out" / "bench_scale.md").read_text()


def test_kept_rows_survive_a_json_round_trip_and_yield_to_rows_measured_again():
    old = dmskd_row(10, 3, _watched(), {"history": _history([10, 10, 10])}, None)
    old10000 = ScaleRow(DMSKD, 10_000, 3, (30.0,), (10_000,), "1 of 3 rounds closed", command="bench-scale A",
                        load_average=(1.0, 1.5, 2.0))
    kept = [ScaleRow.from_json(json.loads(json.dumps(r.to_json()))) for r in (old, old10000)]
    assert kept == [old, old10000]
    new = ScaleRow(DMSKD, 10, 3, (0.1,) * 3, (10,) * 3, None, command="bench-scale B")
    flower = ScaleRow(FLOWER, 10, 3, (0.2,) * 3, (10,) * 3, None, command="bench-scale B")
    assert merged_rows(kept, [flower, new]) == [new, flower, old10000]
    text = report_markdown(merged_rows(kept, [new]), {}, "bench-scale B")
    assert "Command: `bench-scale B` (DMSKD 10)" in text and "Command: `bench-scale A` (DMSKD 10,000)" in text
    assert "| 1.0 1.5 2.0 |" in text


def test_peak_summary_groups_processes_of_one_kind():
    peaks = [ProcessPeak("ray::ClientAppActor", 1, 300_000_000), ProcessPeak("ray::ClientAppActor", 2, 250_000_000),
             ProcessPeak("raylet", 3, 30_000_000)]
    assert peak_summary(peaks) == "ray::ClientAppActor x2 max 300 MB; raylet 30 MB"
    assert peak_summary([]) == "-"


def test_report_states_the_machine_and_the_command():
    row = ScaleRow(DMSKD, 10, 3, (0.1,) * 3, (10,) * 3, None)
    text = report_markdown([row], {"cpus": 2, "memory_gb": 25.3, "platform": "Linux", "python": "3.11.7"},
                           "python -m simulator bench-scale --sizes 10", ["shared machine"])
    assert "Command: `python -m simulator bench-scale --sizes 10`" in text
    assert "2 cores, 25.3 GB, no GPU" in text and "- shared machine" in text


def test_process_label_names_python_modules_scripts_and_ray_workers():
    assert process_label("python", ["/v/bin/python", "-m", "simulator", "run", "--devices", "2"]) == \
        "python -m simulator run"
    assert process_label("python", ["python", "-m", "simulator.flower_side", "--fleet", "F"]) == \
        "python -m simulator.flower_side"
    assert process_label("ray::ClientAppA", ["ray::ClientAppActor", ""]) == "ray::ClientAppActor"
    assert process_label("python", ["/v/bin/python", "-u", "/x/dashboard/agent.py", "--x"]) == "python agent.py"
    assert process_label("mosquitto", ["/usr/sbin/mosquitto", "-c", "m.conf"]) == "mosquitto"


def test_watch_reports_the_exit_code_the_last_line_and_the_peak_rss(tmp_path):
    # alive for a few samples: sampled just after its fork, a process holds a few kB, not its interpreter
    code = "import sys, time; print('working', flush=True); time.sleep(1); print('error: no data', file=sys.stderr); " \
           "sys.exit(3)"
    watched = watch([sys.executable, "-c", code], 30, tmp_path / "log.txt")
    assert watched.returncode == 3 and watched.last_line() == "error: no data"
    assert "working" in (tmp_path / "log.txt").read_text()
    assert watched.peaks and watched.peaks[0].peak_rss_bytes > 1_000_000


def test_bench_scale_reports_a_run_stopped_at_its_timeout_instead_of_crashing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["bench-scale", "--sizes", "2", "--rounds", "1", "--flower-sizes", "none", "--timeout", "3",
                 "--work", str(tmp_path / "work"), "--out", str(out)])
    assert code == 1
    printed = capsys.readouterr().out
    assert "did not complete: the run timed out after 3 s" in printed
    report = json.loads((out / "bench_scale.json").read_text())
    (row,) = report["rows"]
    assert row["devices"] == 2 and not row["completed"] and row["round_seconds"] == []
    assert any(p["label"] == "python -m simulator run" and p["peak_rss_bytes"] > 10_000_000 for p in row["peaks"])
    assert (out / "bench_scale.png").stat().st_size > 1000
    assert "did not complete: the run timed out after 3 s" in (out / "bench_scale.md").read_text()


def test_flower_is_pinned_in_its_own_requirements_and_never_in_the_project_ones():
    assert pinned_flwr(REPO / REQUIREMENTS).count(".") == 2
    assert "requirements-edge.txt" in (REPO / REQUIREMENTS).read_text()
    for name in ("requirements.txt", "requirements-edge.txt"):
        assert "flwr" not in (REPO / name).read_text()


def test_a_harness_failure_on_one_run_becomes_its_row_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    from simulator import bench_scale_command

    def fake_run(args, devices, progress, repeat=0):
        if devices == 10:
            raise OSError("disk full")
        return ScaleRow(DMSKD, devices, args.rounds, (0.1,), (devices,), None)

    monkeypatch.setattr(bench_scale_command, "run_dmskd", fake_run)
    code = main(["bench-scale", "--sizes", "10,20", "--rounds", "1", "--flower-sizes", "none",
                 "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert code == 1
    rows = json.loads((tmp_path / "out" / "bench_scale.json").read_text())["rows"]
    assert [(r["devices"], r["completed"]) for r in rows] == [(10, False), (20, True)]
    assert rows[0]["failure"] == "the benchmark failed on this run: OSError('disk full')"
    assert "did not complete: the benchmark failed on this run" in capsys.readouterr().out
