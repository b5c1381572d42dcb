"""`python -m simulator bench-scale`: DMSKD's MQTT federation at growing fleet sizes, and Flower beside it.

For each fleet size N (every size of --sizes and --flower-sizes, smallest first) it runs
`python -m simulator run --devices N --broker mosquitto --device-sampling pool` as a child process (memory
per run), sampling the peak RSS of it and the broker it starts, and reads the run's metrics.json (or, for a
run that failed, its checkpoint). At the --flower-sizes it also writes the same fleet with
`python -m simulator prepare` and runs Flower's simulation engine on it in a separate venv
(simulator/flower_env.py sets it up; simulator/flower_side.py runs it). A run that fails or overstays its
timeout is a row "did not complete: <reason>" with the figures it has, never the end of the benchmark.
Writes OUT/bench_scale.md, .json and .png (rewritten after every row); each run's log and files go to --work.
Exits 1 when a row did not complete, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge.cli import EXIT_FAILURE, EXIT_OK, positive_float, positive_int, positive_int_list, seed_int
from simulator.bench_scale import (
    DMSKD,
    FLOWER,
    ScaleRow,
    dmskd_row,
    flower_row,
    merged_rows,
    plot_scale,
    ratio_table,
    report_markdown,
    run_failure,
    scale_table,
)
from simulator.watched_process import watch

REPO = Path(__file__).resolve().parents[1]
ROUND_CLOSED = re.compile(r"round (\d+) closes")
FLOWER_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")


def sizes_or_none(text: str) -> list[int]:
    """argparse type: comma-separated fleet sizes, or `none` for no Flower runs."""
    return [] if text.strip().lower() in ("none", "") else positive_int_list(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `bench-scale` verb and its flags."""
    p = sub.add_parser("bench-scale", help="seconds per round, ms per device-round, peak RSS and bytes against "
                                           "fleet size over MQTT, beside Flower's simulation engine",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=positive_int_list, default="10,100,1000,10000",
                   help="comma-separated fleet sizes of the DMSKD runs")
    p.add_argument("--rounds", type=positive_int, default=3, help="federated rounds of every run")
    p.add_argument("--flower-sizes", type=sizes_or_none, default="10,1000",
                   help="fleet sizes Flower also runs (and DMSKD, if not in --sizes); none: no Flower")
    p.add_argument("--out", type=Path, default=Path("docs/results/bench-scale"),
                   help="directory for bench_scale.md, .json, .png")
    p.add_argument("--work", type=Path, default=Path("runs/bench-scale"),
                   help="directory for each run's files and log (replaced run by run)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the split, the teacher and the devices")
    p.add_argument("--samples-per-device", type=positive_int, default=32,
                   help="training examples every device draws from the pool (--device-sampling pool)")
    p.add_argument("--teacher-epochs", type=positive_int, default=30, help="epochs of the cloud's teacher")
    p.add_argument("--timeout", type=positive_float,
                   help="seconds one run may take before it is stopped (default: 600 + 0.3 per device)")
    p.add_argument("--flower-venv", type=Path, default=Path(".venv-flower"),
                   help="the Flower venv; created with python3.11 and requirements-flower.txt when it lacks flwr")
    p.add_argument("--cpus-per-client", type=positive_float, default=1.0,
                   help="Ray CPUs per Flower virtual client (2 cores / 1.0 = two clients train at once, as DMSKD's "
                        "two device worker threads do)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="runs of every system at every size; at a size both run, DMSKD and Flower alternate, so that "
                        "a change in the machine's load falls on both, and the ratio's median and range are reported")
    p.add_argument("--keep-rows", action="store_true",
                   help="keep the rows of OUT/bench_scale.json whose system and size this run does not measure "
                        "(add N = 10,000 to an earlier report: --sizes 10000 --flower-sizes none --keep-rows)")
    p.set_defaults(run=run)


def timeout_for(args: argparse.Namespace, devices: int) -> float:
    return args.timeout if args.timeout is not None else 600.0 + 0.3 * devices


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fleet_flags(args: argparse.Namespace, devices: int) -> list[str]:
    """The flags `run` and `prepare` share, so both sides get the same split, teacher and student."""
    return ["--devices", str(devices), "--rounds", str(args.rounds), "--seed", str(args.seed),
            "--device-sampling", "pool", "--samples-per-device", str(args.samples_per_device),
            "--teacher-epochs", str(args.teacher_epochs), "--log-level", "INFO"]


def _log_name(name: str, repeat: int) -> str:
    return f"{name}.log" if repeat == 0 else f"{name}-run{repeat + 1}.log"


def run_dmskd(args: argparse.Namespace, devices: int, progress: Callable[[str], None], repeat: int = 0) -> ScaleRow:
    """One `python -m simulator run` over a mosquitto it starts; its row."""
    run_dir = args.work / f"dmskd-{devices}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a previous run's metrics must not be read as this one's

    def on_line(line: str) -> None:
        closed = ROUND_CLOSED.search(line)
        if closed:
            progress(f"DMSKD N={devices:,}: round {int(closed.group(1)) + 1}/{args.rounds} closed")
        elif line.startswith("· "):
            progress(f"DMSKD N={devices:,}: {line[2:60]}")

    command = [sys.executable, "-m", "simulator", "run", *fleet_flags(args, devices), "--broker", "mosquitto",
               "--run-dir", str(run_dir)]
    watched = watch(command, timeout_for(args, devices), args.work / _log_name(f"dmskd-{devices}", repeat),
                    on_line=on_line)
    row = dmskd_row(devices, args.rounds, watched, _json(run_dir / "metrics.json"),
                    _json(run_dir / "checkpoint" / "state.json"))
    return replace(row, repeat=repeat)


def run_flower_side(args: argparse.Namespace, devices: int, python: Path | str,
                    progress: Callable[[str], None], repeat: int = 0) -> ScaleRow:
    """Prepare the same fleet (once per size: a repeat reuses it), then Flower's simulation on it in the Flower
    venv; its row."""
    fleet_dir, figures_path = args.work / f"fleet-{devices}", args.work / f"flower-{devices}.json"
    figures_path.unlink(missing_ok=True)
    if repeat == 0 or not (fleet_dir / "bundle" / "bundle.json").is_file():
        shutil.rmtree(fleet_dir, ignore_errors=True)
        progress(f"Flower N={devices:,}: preparing the fleet (python -m simulator prepare)")
        prepare = [sys.executable, "-m", "simulator", "prepare", "--out", str(fleet_dir), *fleet_flags(args, devices)]
        prepared = watch(prepare, timeout_for(args, devices), args.work / f"fleet-{devices}.log")
        problem = run_failure(prepared, "preparing the fleet")
        if problem is not None:
            return replace(flower_row(devices, args.rounds, prepared, None, problem), repeat=repeat)

    def on_line(line: str) -> None:
        started = FLOWER_ROUND.search(line)
        if started:
            progress(f"Flower N={devices:,}: round {started.group(1)}/{started.group(2)} started")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    command = [str(python), "-m", "simulator.flower_side", "--fleet", str(fleet_dir), "--rounds", str(args.rounds),
               "--seed", str(args.seed), "--cpus-per-client", str(args.cpus_per_client), "--out", str(figures_path)]
    watched = watch(command, timeout_for(args, devices), args.work / _log_name(f"flower-{devices}", repeat), env=env,
                    on_line=on_line, cwd=REPO)
    return replace(flower_row(devices, args.rounds, watched, _json(figures_path)), repeat=repeat)


def flower_python(args: argparse.Namespace, progress: Callable[[str], None]) -> tuple[Path | None, str | None]:
    """The Flower venv's python (set up if needed), or None and why it could not be."""
    from simulator.flower_env import FlowerSetupError, ensure_flower_env

    try:
        return ensure_flower_env(args.flower_venv, REPO, args.work / "flower-setup.log", progress), None
    except FlowerSetupError as exc:
        return None, f"Flower setup failed: {exc}"


def machine_facts(flower: Path | None) -> dict:
    """Cores, memory, platform, mosquitto and Flower's versions."""
    from simulator.chaos_command import machine

    facts = machine()
    if flower is not None:
        probe = subprocess.run([str(flower), "-c", "import flwr, ray; print(flwr.__version__, ray.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and len(probe.stdout.split()) == 2:
            facts["flwr"], facts["ray"] = probe.stdout.split()
    return facts


def write_outputs(out: Path, rows: list[ScaleRow], facts: dict, command: str) -> None:
    """bench_scale.md, .json and .png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    notes = ["figures are wall-clock times; a load average above the 2 cores means other work shared the machine"]
    (out / "bench_scale.md").write_text(report_markdown(rows, facts, command, notes))
    (out / "bench_scale.json").write_text(json.dumps({"command": command, "machine": facts,
                                                      "rows": [r.to_json() for r in rows]}, indent=2, default=str))
    plot_scale(rows, out / "bench_scale.png")


def kept_rows(args: argparse.Namespace) -> tuple[list[ScaleRow], dict]:
    """With --keep-rows, the rows and machine facts of OUT/bench_scale.json (none if it is missing or unreadable)."""
    earlier = (_json(args.out / "bench_scale.json") if args.keep_rows else None) or {}
    try:
        return [ScaleRow.from_json(raw) for raw in earlier.get("rows", [])], dict(earlier.get("machine") or {})
    except (TypeError, ValueError, AttributeError):
        print(f"  {args.out}/bench_scale.json is not a bench-scale report; its rows are not kept", file=sys.stderr)
        return [], {}


def run(args: argparse.Namespace) -> int:
    """Every DMSKD and Flower run in turn; the report after each; exit 1 if a row did not complete."""
    from tqdm import tqdm

    sizes = sorted(set(args.sizes) | set(args.flower_sizes))
    steps = [(system, n, rep) for n in sizes for rep in range(args.repeats)
             for system in (DMSKD, FLOWER) if system == DMSKD or n in args.flower_sizes]
    args.work.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(steps), desc="bench-scale", unit="run", file=sys.stdout)
    progress = bar.set_postfix_str
    python, setup_problem = flower_python(args, bar.write) if args.flower_sizes else (None, None)
    facts = machine_facts(python)
    (kept, earlier_facts), rows = kept_rows(args), []
    for key in ("flwr", "ray"):  # the versions of kept Flower rows
        if key in earlier_facts and any(r.system == FLOWER for r in kept):
            facts.setdefault(key, earlier_facts[key])
    try:
        for system, n, rep in steps:
            load = tuple(round(x, 2) for x in os.getloadavg())
            try:
                if system == DMSKD:
                    row = run_dmskd(args, n, progress, repeat=rep)
                elif python is None:
                    row = replace(flower_row(n, args.rounds, None, None, setup_problem), repeat=rep)
                else:
                    row = run_flower_side(args, n, python, progress, repeat=rep)
            except Exception as exc:  # the harness itself failed on this run: a row says so, the others still run
                row = ScaleRow(system, n, args.rounds, (), (), f"the benchmark failed on this run: {exc!r}",
                               repeat=rep)
            rows.append(replace(row, command=args.command_line, load_average=load))
            bar.update(1)
            bar.write(one_line(rows[-1]))
            write_outputs(args.out, merged_rows(kept, rows), facts, args.command_line)
    finally:
        bar.close()
    everything = merged_rows(kept, rows)
    print()
    print(scale_table(everything))
    if any(r.system == FLOWER for r in everything):
        print()
        print(ratio_table(everything))
    print(f"\n  wrote {args.out}/bench_scale.md, bench_scale.json, bench_scale.png; run logs in {args.work}")
    return EXIT_OK if all(r.completed for r in rows) else EXIT_FAILURE


def one_line(row: ScaleRow) -> str:
    """A row as it finishes, for the console."""
    s, ms = row.seconds_per_round, row.ms_per_device_round
    figures = "no round closed" if s is None else f"{s:.3f} s/round, {ms:.2f} ms/device-round"
    status = "completed" if row.completed else f"did not complete: {row.failure}"
    return f"  {row.system:26s} N={row.devices:<7,d} {figures}; {status} ({time.strftime('%H:%M:%S')})"
