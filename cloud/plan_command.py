"""`python -m cloud plan`: plan a shard for every device of a fleet file, print it, write plan.json.

plan.json (read by `python -m export --plan plan.json --out DIR`):
  {"teacher_dir": str, "lambda": float, "solver": "exact" | "greedy", "max_shards": int | null,
   "fleet": str, "fleet_file": str, "objective_total": float,
   "shards": {shard_id: {"k", "targets": [...], "flops_per_sample", "int8_bytes_estimate",
                         "arena_bytes_estimate", "arena_bytes_measured", "expected_accuracy",
                         "ops": [...], "devices": int}},
   "devices": [{"device_id", "shard_id", "k", "target", "flops_per_epoch", "model_bytes", "arena_bytes",
                "expected_accuracy", "class", "samples", "labels", "flops_budget", "arena_limit", "flash_limit",
                "download_seconds", "objective"}],
   "candidates": [{"shard_id", "k", "flops_per_sample", "params", "int8_bytes_profile", "float_bytes",
                   "tflite_bytes", "peak_activation_bytes", "arena_bytes_estimate", "arena_bytes_measured",
                   "ops", "expected_accuracy"}]}
shards lists only the shards some device uses; "targets" are the targets of those devices.
int8_bytes_estimate is the size of the full-int8 TFLite conversion done while planning;
arena_bytes_estimate the profiler's TFLite-Micro arena estimate; devices[].arena_bytes the
arena the plan was checked against (measured in TFLite-Micro when it ran there); devices[].labels
the fleet file's labelled fraction (0: a meter, the shard its only supervisor), for DevicePlan.labelled_fraction.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import OrderedDict
from pathlib import Path

from edge.cli import EXIT_OK, fail, non_negative_float, output_path_problem, positive_int

SOLVERS = ("exact", "greedy")
MAX_ROWS = 40


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `plan` verb."""
    p = sub.add_parser("plan", help="plan a teacher shard for every device of a fleet file; write plan.json",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--fleet", type=Path, required=True, help="fleet description (.toml, .yaml or .yml)")
    p.add_argument("--teacher", type=Path, required=True,
                   help="teacher directory (make one with `python -m simulator teacher --out DIR`)")
    p.add_argument("--lambda", dest="lam", metavar="LAMBDA", type=non_negative_float, default=0.05,
                   help="price of communication: accuracy (0..1) given up per second of one-off shard download "
                        "over the device's link (a device with no stated link counts 1 MB/s, "
                        "so one second = one MB)")
    p.add_argument("--solver", choices=SOLVERS, default="exact",
                   help="exact optimum or the paper's greedy heuristic")
    p.add_argument("--max-shards", type=positive_int, default=None,
                   help="at most this many distinct shards in the fleet, solved exactly by enumeration "
                        "(default: no cap)")
    p.add_argument("--out", type=Path, default=Path("plan.json"), help="where to write plan.json")
    p.add_argument("--per-device", action="store_true", help="print one row per device instead of per class")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Read inputs, plan, print, write. A missing or bad input, or a fleet nothing fits: one line, exit 1."""
    from cloud.fleet_file import FleetFileError, load_fleet_file
    from export.teacher_dir import check_teacher_dir

    try:
        fleet = load_fleet_file(args.fleet)
    except FleetFileError as exc:
        return fail(f"{exc}")
    try:
        check_teacher_dir(args.teacher)
    except FileNotFoundError as exc:
        return fail(str(exc))
    if args.out.exists() and args.out.is_dir():
        return fail(f"--out {args.out} is a directory; pass a file path such as {args.out / 'plan.json'}")
    problem = output_path_problem(args.out, "--out", directory=False)
    if problem:
        return fail(problem)

    from export.errors import InputError
    from export.teacher_dir import load_teacher_dir

    started = time.perf_counter()
    try:
        teacher = load_teacher_dir(args.teacher)
    except (FileNotFoundError, InputError) as exc:
        return fail(str(exc))
    from cloud.candidates import teacher_candidates
    from cloud.planner import NoShardFits, plan_shards, plan_shards_greedy, total_objective

    facts = teacher_candidates(teacher)
    candidates = [f.candidate() for f in facts]
    solve = plan_shards if args.solver == "exact" else plan_shards_greedy
    try:
        t0 = time.perf_counter()
        assignments = solve(fleet.devices, candidates, args.lam, args.max_shards)
        solve_seconds = time.perf_counter() - t0
    except NoShardFits as exc:
        return fail(str(exc))
    doc = plan_document(fleet, facts, assignments, args.teacher, args.lam, args.solver, args.max_shards)
    print(render_plan(fleet, facts, assignments, args, solve_seconds, time.perf_counter() - started, doc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out} (total objective {total_objective(assignments):.4f}); "
          f"export it with `python -m export --plan {args.out} --out DIR`")
    return EXIT_OK


def plan_document(fleet, facts, assignments, teacher_dir: Path, lam: float, solver: str,
                  max_shards: int | None) -> dict:
    """The plan.json object (schema in the module docstring)."""
    by_id = {f.shard_id: f for f in facts}
    devices = {d.device_id: d for d in fleet.devices}
    used: dict[str, dict] = {}
    rows = []
    for a in assignments:
        d, f = devices[a.device_id], by_id[a.shard_id]
        entry = used.setdefault(a.shard_id, {"targets": set(), "devices": 0})
        entry["targets"].add(a.target)
        entry["devices"] += 1
        rows.append({"device_id": a.device_id, "shard_id": a.shard_id, "k": a.k, "target": a.target,
                     "flops_per_epoch": int(a.flops_per_epoch), "model_bytes": int(a.model_bytes),
                     "arena_bytes": int(a.arena_bytes), "expected_accuracy": float(a.expected_accuracy),
                     "class": d.device_class, "samples": d.num_samples,
                     "labels": d.labelled_fraction, "flops_budget": float(d.flops_per_epoch),
                     "arena_limit": d.arena_bytes, "flash_limit": d.flash_bytes,
                     "download_seconds": round(a.comm_seconds, 6), "objective": round(a.objective, 6)})
    from export.op_support import TARGETS

    shards = {}
    for f in sorted(facts, key=lambda f: f.k):
        if f.shard_id not in used:
            continue
        shards[f.shard_id] = {
            "k": f.k, "targets": [t for t in TARGETS if t in used[f.shard_id]["targets"]],
            "flops_per_sample": int(f.profile.flops), "int8_bytes_estimate": f.tflite_bytes,
            "arena_bytes_estimate": int(f.profile.arena_bytes), "arena_bytes_measured": f.arena_measured,
            "expected_accuracy": float(f.accuracy), "ops": sorted(f.ops),
            "devices": used[f.shard_id]["devices"]}
    return {
        "teacher_dir": str(Path(teacher_dir).resolve()), "lambda": float(lam), "solver": solver,
        "max_shards": max_shards, "fleet": fleet.name, "fleet_file": str(fleet.path),
        "objective_total": round(sum(a.objective for a in assignments), 6),
        "shards": shards, "devices": rows,
        "candidates": [{"shard_id": f.shard_id, "k": f.k, "flops_per_sample": f.profile.flops,
                        "params": f.profile.params, "int8_bytes_profile": f.profile.int8_bytes,
                        "float_bytes": f.profile.float_bytes, "tflite_bytes": f.tflite_bytes,
                        "peak_activation_bytes": f.profile.peak_activation_bytes,
                        "arena_bytes_estimate": f.profile.arena_bytes, "arena_bytes_measured": f.arena_measured,
                        "ops": sorted(f.ops), "expected_accuracy": f.accuracy} for f in facts],
    }


def render_plan(fleet, facts, assignments, args, solve_seconds: float, total_seconds: float, doc: dict) -> str:
    """The human-readable plan: candidate shards, then devices grouped by class (or one row each)."""
    out = [f"fleet '{fleet.name}' ({fleet.path}): {len(fleet.devices)} devices; teacher {args.teacher}; "
           f"solver {args.solver}, lambda {args.lam:g}"
           + (f", at most {args.max_shards} shards" if args.max_shards else ""), "",
           "candidate shards (FLOPs per sample; arena = TFLite-Micro estimate / measured)"]
    rows: list[tuple[str, ...]] = [("shard", "FLOPs", "params", "int8 B", "arena est", "arena TFLM", "held-out acc",
                                    "devices")]
    counts = {sid: s["devices"] for sid, s in doc["shards"].items()}
    for f in facts:
        rows.append((f.shard_id, _si(f.profile.flops), f"{f.profile.params:,}", f"{f.tflite_bytes:,}",
                     f"{f.profile.arena_bytes:,}",
                     f"{f.arena_measured:,}" if f.arena_measured is not None else "fails",
                     f"{f.accuracy:.4f}", str(counts.get(f.shard_id, 0))))
    out += _table(rows)
    per_device = args.per_device or len(assignments) <= MAX_ROWS
    out += ["", "plan" + (" (one row per device)" if per_device
                          else " (devices grouped by class; --per-device lists each)")]
    rows = [("device", "n", "target", "shard", "FLOPs/epoch", "budget", "arena B", "model B", "exp. acc",
             "download")]
    devices = {d.device_id: d for d in fleet.devices}
    groups: OrderedDict[tuple, list] = OrderedDict()
    for a in assignments:
        d = devices[a.device_id]
        key = (a.device_id,) if per_device or d.device_class is None else (d.device_class, a.shard_id, a.target)
        groups.setdefault(key, []).append((a, d))
    for members in groups.values():
        a0, _ = members[0]
        name = a0.device_id if len(members) == 1 else f"{members[0][0].device_id}..{members[-1][0].device_id}"
        rows.append((name, str(len(members)), a0.target, a0.shard_id,
                     _span([a.flops_per_epoch for a, _ in members], _si),
                     _span([d.flops_per_epoch for _, d in members], _si),
                     f"{a0.arena_bytes:,}", f"{a0.model_bytes:,}", f"{a0.expected_accuracy:.4f}",
                     _span([a.comm_seconds for a, _ in members], lambda s: f"{s:.2f} s")))
    out += _table(rows)
    n = len(assignments)
    mean_acc = sum(a.expected_accuracy for a in assignments) / n
    out += ["", f"{n} devices on {len(doc['shards'])} shard(s) {sorted(doc['shards'])}; mean expected accuracy "
                f"{mean_acc:.4f}; total objective {doc['objective_total']:.4f}; solved in {solve_seconds * 1e3:.1f} ms "
                f"({total_seconds:.1f} s with profiling and conversion)"]
    return "\n".join(out)


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _span(values: list, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def _si(x: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}"
    return f"{x:.3g}"
