"""`python -m simulator chaos`: a small fleet as real processes against crashes, a late device and floods.

One run per fault, each on a mosquitto of its own (fixed port, so a restart is where clients reconnect):
the aggregator is `python -m cloud aggregate`, each device `python -m edge run --insecure-seed K`, all
at --log-level WARNING with their logs in OUT/<fault>/. The harness reads each run's round history
from the aggregator's checkpoint, what each device printed when it ended, and the peak RSS it sampled
every 0.2 s, and scores them (simulator.chaos). Writes OUT/chaos.md and OUT/chaos.json; exits 1 when
a fault lost an accepted update, accepted an invalid one or left rounds undone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.cli import EXIT_FAILURE, EXIT_OK, fail, positive_float, positive_int, seed_int, usage

MB = 1e6


@dataclass
class Context:
    """What a fault's arming shares with the harness: the stop signal, its threads and what it observed."""

    settings: argparse.Namespace
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    killed: dict[str, int] = field(default_factory=dict)  # device -> the round open when it was killed
    notes: dict = field(default_factory=dict)

    def background(self, name: str, work: Callable[[], object]) -> None:
        def run() -> None:
            started = time.monotonic()
            try:
                self.notes[name] = work()
            except Exception as exc:  # a harness failure is reported in the row, not raised on a thread
                self.notes[name] = f"failed after {time.monotonic() - started:.1f} s: {exc!r}"

        thread = threading.Thread(target=run, name=f"chaos-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    arm: Callable  # (ChaosFleet, Context) -> None: registers the fault's hooks before the run starts
    persistent_broker: bool = False
    late_device: bool = False
    flood: bool = False  # runs --flood-rounds rounds, so that the flood falls within the run


def _mid(fleet) -> int:
    return min(2, fleet.prepared.rounds - 1)


def _restart_aggregator(fleet, ctx: Context) -> None:
    def crash() -> None:
        ctx.notes["killed_at"] = f"first update chunk of round {_mid(fleet)}"
        fleet.kill("aggregator")
        time.sleep(0.5)
        fleet.start_aggregator()

    fleet.on_first_update(_mid(fleet), crash)


def _restart_broker(fleet, ctx: Context) -> None:
    def crash() -> None:
        ctx.notes["killed_at"] = f"first update chunk of round {_mid(fleet)}"
        fleet.kill_broker()
        time.sleep(0.5)
        fleet.broker.start()

    fleet.on_first_update(_mid(fleet), crash)


def _kill_device(fleet, ctx: Context) -> None:
    victim = fleet.prepared.devices[0]

    def crash() -> None:
        ctx.killed[victim] = fleet.closed_rounds()  # the round open now: the last it may have sent
        fleet.kill(victim)
        ctx.notes["killed"] = f"{victim} while round {ctx.killed[victim]} was open"

    fleet.at_round(min(2, fleet.prepared.rounds - 1), crash)


def _late_device(fleet, ctx: Context) -> None:
    late = fleet.prepared.devices[-1]
    def join() -> None:
        ctx.notes["started"] = f"{late} once round {fleet.closed_rounds() - 1} had closed"
        fleet.start_device(late)

    fleet.at_round(min(2, fleet.prepared.rounds - 1), join)


def _flood(kind: str) -> Callable:
    def arm(fleet, ctx: Context) -> None:
        import numpy as np

        from simulator import chaos_floods as cf

        s, p = ctx.settings, fleet.prepared

        def current() -> int:
            return len(fleet.history)

        def work() -> cf.FloodStats:
            if kind == "oversized":
                stats = cf.oversized(fleet.broker.host, fleet.broker.port, fleet.topics, p.devices, current, ctx.stop)
            else:
                flooder = cf.Flooder(fleet.broker.host, fleet.broker.port, f"chaos-{kind}",
                                     window=16 if kind == "partial" else 1000)
                try:
                    stats = (cf.partial_chunk_flood(flooder, fleet.topics, p.devices, current,
                                                    s.flood_mib * cf.MIB, ctx.stop) if kind == "partial" else
                             cf.garbage_flood(flooder, fleet.topics, p.devices, p.rounds, current, s.garbage,
                                              ctx.stop, np.random.default_rng(s.seed)))
                finally:
                    flooder.close()
            return stats

        fleet.on_first_update(0, lambda: ctx.background(kind, work))
    return arm


FAULTS = (
    Fault("clean", "the baseline run", lambda fleet, ctx: None),
    Fault("clean-long", "the flood rows' baseline: a clean run of --flood-rounds rounds", lambda fleet, ctx: None,
          flood=True),
    Fault("kill-aggregator", "kill -9 the aggregator at the first update of round 2, restart it on its checkpoint",
          _restart_aggregator),
    Fault("kill-broker", "kill -9 mosquitto (no persistence) at the first update of round 2, restart it empty",
          _restart_broker),
    Fault("kill-broker-persistent", "the same with mosquitto persistence (autosave every 1 s)", _restart_broker,
          persistent_broker=True),
    Fault("kill-device", "kill -9 one device once rounds 0 and 1 closed; it stays dead", _kill_device),
    Fault("late-device", "one device starts only once rounds 0 and 1 closed", _late_device, late_device=True),
    Fault("partial-chunk-flood", "never-completing chunk streams (--flood-mib) on update and model topics",
          _flood("partial"), flood=True),
    Fault("garbage-flood", "--garbage QoS 0 messages on update, model, plan, cohort, status, result topics",
          _flood("garbage"), flood=True),
    Fault("oversized", "20 MB and 100 MB messages, chunked and as one packet, on update and model topics (x2)",
          _flood("oversized"), flood=True),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `chaos` verb."""
    names = ",".join(f.name for f in FAULTS)
    p = sub.add_parser("chaos", help="crash, late-join and flood a fleet of real processes; table of what held",
                       description=__doc__)
    p.add_argument("--devices", type=positive_int, default=5, help="devices of the fleet")
    p.add_argument("--rounds", type=positive_int, default=5, help="federated rounds per fault")
    p.add_argument("--teacher-epochs", type=positive_int, default=5, help="epochs of the cloud's teacher")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the split, teacher, devices and floods")
    p.add_argument("--deadline", type=positive_float, default=20.0,
                   help="seconds a round waits at most for devices that look online")
    p.add_argument("--faults", default=names, help=f"comma-separated faults to run, of {names}")
    p.add_argument("--flood-mib", type=positive_int, default=1024, help="MiB of the partial-chunk flood")
    p.add_argument("--garbage", type=positive_int, default=100_000, help="messages of the garbage flood")
    p.add_argument("--flood-rounds", type=positive_int, default=100,
                   help="rounds of the flood faults' runs and their clean baseline (a clean round takes ~0.1 s: "
                        "5 rounds would end before the flood)")
    p.add_argument("--prepared", type=Path,
                   help="reuse a `python -m simulator prepare --out DIR` directory (default: prepare one in --out)")
    p.add_argument("--out", type=Path, default=Path("runs/chaos"), help="directory for chaos.md, chaos.json, logs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Every fault of --faults in turn; the table on stdout, chaos.md and chaos.json in --out."""
    chosen = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(chosen) - {f.name for f in FAULTS})
    if unknown:
        return usage(f"unknown fault {', '.join(unknown)}: --faults takes some of {', '.join(f.name for f in FAULTS)}")
    try:
        import psutil  # noqa: F401 - checked here so a missing one is one line, not a traceback
    except ImportError:
        return fail("the chaos benchmark samples memory with psutil: pip install psutil")
    from simulator.broker import mosquitto_binary

    if mosquitto_binary() is None:
        return fail("the chaos benchmark runs mosquitto: apt-get install mosquitto")
    args.out.mkdir(parents=True, exist_ok=True)
    prepared_dir = args.prepared or _prepare(args)
    if prepared_dir is None:
        return fail(f"python -m simulator prepare failed; see {args.out / 'prepare.log'}")
    report = run_faults(args, Path(prepared_dir), [f for f in FAULTS if f.name in chosen])
    failed = [r["fault"] for r in report["rows"] if r["verdict"].startswith("FAIL")]
    if failed:
        return fail(f"{', '.join(failed)}: lost or invalid updates, or rounds undone; see {args.out / 'chaos.md'}")
    return EXIT_OK if report["rows"] else EXIT_FAILURE


def _prepare(args: argparse.Namespace) -> Path | None:
    out = args.out / "prepared"
    print(f"· preparing {args.devices} devices x {args.rounds} rounds in {out}", flush=True)
    with open(args.out / "prepare.log", "wb") as log:
        code = subprocess.call([sys.executable, "-m", "simulator", "prepare", "--out", str(out), "--devices",
                                str(args.devices), "--rounds", str(args.rounds), "--teacher-epochs",
                                str(args.teacher_epochs), "--seed", str(args.seed), "--fleet", "chaos",
                                "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT)
    return out if code == 0 else None


def run_faults(args: argparse.Namespace, prepared_dir: Path, faults: list[Fault]) -> dict:
    """Run the faults, print and write the report; return it (chaos.json's content)."""
    from tqdm import tqdm

    from simulator import chaos
    from simulator.chaos_fleet import Prepared

    prepared = Prepared.from_dir(prepared_dir)
    rows: list[chaos.FaultRow] = []
    details: dict[str, dict] = {}
    clean: dict[bool, chaos.FaultRow] = {}  # flood (long) or not -> its clean row
    long = (prepared.with_rounds(args.flood_rounds, args.out / "prepared-flood") if any(f.flood for f in faults)
            else None)
    for fault in faults:
        fleet_files = long if fault.flood and long is not None else prepared
        with tqdm(total=fleet_files.rounds, desc=f"{fault.name:22s}", unit="round", leave=True) as bar:
            row, detail = run_fault(args, fleet_files, fault, clean.get(fault.flood), bar)
        rows.append(row)
        details[fault.name] = detail
        if fault.name.startswith("clean"):
            clean[fault.flood] = row
    table = chaos.markdown_table(rows)
    print("\n" + table)
    report = {"command": args.command_line, "machine": machine(), "settings": {
        "devices": len(prepared.devices), "rounds": prepared.rounds, "deadline_s": args.deadline,
        "flood_mib": args.flood_mib, "garbage": args.garbage, "flood_rounds": args.flood_rounds,
        "prepared": str(prepared_dir)},
        "rows": [r.to_dict() for r in rows], "details": details}
    (args.out / "chaos.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "chaos.md").write_text(chaos.markdown_report(report, table))
    print(f"\n  wrote {args.out}/chaos.md, chaos.json; logs in {args.out}/<fault>/")
    return report


def run_fault(args: argparse.Namespace, prepared, fault: Fault, clean, bar) -> tuple:
    """One fault's run: start, arm, wait, score."""
    import shutil

    from simulator import chaos
    from simulator.chaos_fleet import ChaosFleet

    work = args.out / fault.name
    shutil.rmtree(work, ignore_errors=True)
    fleet = ChaosFleet(prepared, work, args.deadline, persistent_broker=fault.persistent_broker)
    ctx = Context(args)
    late = frozenset({prepared.devices[-1]}) if fault.late_device else frozenset()
    started = time.monotonic()
    try:
        fleet.broker.start()
        fault.arm(fleet, ctx)
        fleet.start(late)

        def tick(closed: int) -> None:
            bar.update(closed - bar.n)

        finished = fleet.wait(prepared.rounds * args.deadline + 120, on_tick=tick)
    finally:
        ctx.stop.set()
        fleet.close()
        for thread in ctx.threads:
            thread.join(timeout=60)
    bar.update(len(fleet.history) - bar.n)
    runs = []
    for d in prepared.devices:
        if d in ctx.killed:
            runs.append(chaos.DeviceRun(d, None, ctx.killed[d]))
        elif d in fleet.procs:
            runs.append(chaos.DeviceRun(d, chaos.rounds_done(fleet.log_text(d), d)))
        else:
            runs.append(chaos.DeviceRun(d, frozenset()))  # never started: it sent nothing
    history = fleet.history
    s = chaos.score(history, prepared.devices, runs)
    spr = chaos.seconds_per_round(history, fleet.closed_at)
    ratio = spr / clean.seconds_per_round if clean and spr and clean.seconds_per_round else None
    mb = {role: rss / MB for role, rss in fleet.peak_rss.items()}
    agg, dev = mb.get("aggregator", 0.0), max((mb.get(d, 0.0) for d in prepared.devices), default=0.0)
    over = None if clean is None else max(agg - clean.aggregator_rss_mb, dev - clean.device_rss_mb)
    at_deadline = chaos.deadline_rounds(history, args.deadline)
    notes = {k: _flood_note(v, fleet) for k, v in ctx.notes.items()}
    silent = [r.device for r in runs if r.trained is None and r.device not in ctx.killed]
    if silent:
        notes["devices_without_rounds_done"] = silent
    dropped = fleet.broker_dropped()
    if dropped:
        notes["broker_dropped_outgoing_for"] = dropped
    if not finished:
        notes["unfinished"] = "the run did not end in time; its children were killed"
    row = chaos.FaultRow(fault.name, prepared.rounds, s.completed, len(s.lost), len(s.invalid), agg, dev,
                         mb.get("broker", 0.0), spr, ratio, at_deadline,
                         chaos.verdict(prepared.rounds, s, at_deadline, ratio, over), json.dumps(notes, default=str),
                         chaos.max_close_lag(history))
    detail = {"description": fault.description, "fleet": list(prepared.devices),
              "wall_s": time.monotonic() - started, "lost": s.lost,
              "invalid": s.invalid, "peak_rss_mb": mb, "exit_codes": {r: p.returncode for r, p in fleet.procs.items()},
              "trained": {r.device: sorted(r.trained) if r.trained is not None else None for r in runs},
              "accepted": [h["accepted"] for h in history], "round_seconds": [h["seconds"] for h in history],
              "rejected": [h.get("rejected") for h in history], "notes": notes}
    bar.set_postfix_str(row.verdict[:60])
    return row, detail


def _flood_note(note: object, fleet) -> object:
    """A flood's statistics, with the share of it that fell between round 0's opening and the last close."""
    from simulator.chaos_floods import FloodStats

    if not isinstance(note, FloodStats):
        return note
    out = {k: v for k, v in note.__dict__.items() if k != "started_at"}
    if fleet.history and len(fleet.closed_at) >= len(fleet.history):
        opened = fleet.closed_at[0] - float(fleet.history[0]["seconds"])
        out["share_during_rounds"] = round(note.during(opened, fleet.closed_at[len(fleet.history) - 1]), 3)
    return out


def machine() -> dict:
    import psutil

    from simulator.broker import mosquitto_binary

    version = subprocess.run([mosquitto_binary() or "mosquitto", "-h"], capture_output=True, text=True).stdout
    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "mosquitto": (version.splitlines() or ["?"])[0]}
