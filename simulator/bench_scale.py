"""bench-scale's figures: one row per system and fleet size, from what a run left behind, and their report.

A DMSKD row comes from the run's metrics.json when it finished, else from the aggregator's checkpoint
(state.json: the rounds that closed before it stopped); a Flower row from the JSON simulator/flower_side.py
writes. Every row says whether it completed (all rounds, every device accepted in each) and, when not, why
("did not complete: ..."), with the figures it has. Pure functions: the command (bench_scale_command.py)
does the I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from simulator.watched_process import ProcessPeak, Watched

DMSKD = "DMSKD (MQTT, mosquitto)"
FLOWER = "Flower (simulation, Ray)"
MB = 1e6


@dataclass(frozen=True)
class ScaleRow:
    """One system at one fleet size: its rounds' times, traffic, memory and whether it completed."""

    system: str
    devices: int
    rounds_requested: int
    round_seconds: tuple[float, ...]
    accepted: tuple[int, ...]  # updates accepted (aggregated) per round
    failure: str | None  # None: completed
    peaks: tuple[ProcessPeak, ...] = ()
    peak_total_rss_bytes: int = 0
    wall_seconds: float = 0.0
    bytes_per_round: float | None = None  # payload bytes up + down, mean over rounds (None: not measured)
    update_bytes_per_device_round: float | None = None  # one device's update on the wire, MQTT framing included
    accuracy: float | None = None  # the global student's test accuracy after the last round
    command: str = ""  # the bench-scale command that measured it
    load_average: tuple[float, ...] = ()  # the machine's 1, 5 and 15 minute load when the run started
    train_seconds: tuple[float, ...] = ()  # Flower: seconds of DMSKD local training per round, summed over devices
    repeat: int = 0  # which of the --repeats runs of this system and size (they alternate with the other system's)

    @property
    def completed(self) -> bool:
        return self.failure is None

    @property
    def seconds_per_round(self) -> float | None:
        """Mean over the rounds that closed."""
        return statistics.fmean(self.round_seconds) if self.round_seconds else None

    @property
    def steady_seconds_per_round(self) -> float | None:
        """Mean over the rounds after the first (which also pays for start-up: artefacts, workers)."""
        return statistics.fmean(self.round_seconds[1:]) if len(self.round_seconds) > 1 else None

    @property
    def ms_per_device_round(self) -> float | None:
        s = self.seconds_per_round
        return None if s is None else 1000 * s / self.devices

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(completed=self.completed, seconds_per_round=self.seconds_per_round,
                   steady_seconds_per_round=self.steady_seconds_per_round,
                   ms_per_device_round=self.ms_per_device_round)
        return out

    @classmethod
    def from_json(cls, raw: dict) -> ScaleRow:
        """A row as to_json wrote it (bench_scale.json), for a report that keeps earlier rows."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["peaks"] = tuple(ProcessPeak(**p) for p in raw.get("peaks", ()))
        for name in ("round_seconds", "accepted", "load_average", "train_seconds"):
            values[name] = tuple(raw.get(name, ()))
        return cls(**values)


def merged_rows(kept: Sequence[ScaleRow], measured: Sequence[ScaleRow]) -> list[ScaleRow]:
    """The rows just measured, plus the kept ones of a system and size not measured again; by size, then system."""
    fresh = {(r.system, r.devices) for r in measured}
    rows = [*measured, *(r for r in kept if (r.system, r.devices) not in fresh)]
    return sorted(rows, key=lambda r: (r.devices, r.repeat, r.system != DMSKD))


def run_failure(watched: Watched, what: str) -> str | None:
    """Why a watched command failed (timed out, or its exit code and last line), or None if it exited 0."""
    if watched.timed_out:
        return f"{what} timed out after {watched.timeout_s:.0f} s"
    if watched.returncode != 0:
        line = watched.last_line()
        return f"{what} exited {watched.returncode}" + (f": {line.strip()[:300]}" if line else "")
    return None


def rounds_failure(rounds: int, devices: int, accepted: Sequence[int]) -> str | None:
    """Why the rounds that closed fall short of `rounds` rounds with every device accepted, or None."""
    if len(accepted) < rounds:
        return f"{len(accepted)} of {rounds} rounds closed"
    short = [(r, n) for r, n in enumerate(accepted) if n < devices]
    if short:
        r, n = short[0]
        return f"round {r} accepted {n} of {devices} devices" + (f" ({len(short)} rounds short)" if len(short) > 1
                                                                  else "")
    return None


def dmskd_row(devices: int, rounds: int, watched: Watched, metrics: dict | None,
              checkpoint: dict | None) -> ScaleRow:
    """The DMSKD row of one `python -m simulator run`: metrics.json if it wrote one, else its checkpoint."""
    history = (metrics or {}).get("history") or (checkpoint or {}).get("history") or []
    accepted = tuple(len(h.get("accepted", ())) for h in history)
    failure = run_failure(watched, "the run") or rounds_failure(rounds, devices, accepted)
    up, down = (metrics or {}).get("bytes_up_per_round"), (metrics or {}).get("bytes_down_per_round")
    per_round = statistics.fmean(u + d for u, d in zip(up, down)) if up and down else None
    return ScaleRow(DMSKD, devices, rounds, tuple(float(h["seconds"]) for h in history), accepted, failure,
                    watched.peaks, watched.peak_total_rss_bytes, watched.seconds, per_round,
                    (metrics or {}).get("update_bytes_per_device_round"),
                    float(history[-1]["accuracy"]) if history and "accuracy" in history[-1] else None)


def flower_row(devices: int, rounds: int, watched: Watched | None, figures: dict | None,
               setup_failure: str | None = None) -> ScaleRow:
    """The Flower row of one simulator/flower_side.py run (figures: the JSON it wrote, None if it wrote none;
    watched None: it never ran, setup_failure says why)."""
    f = figures or {}
    accepted = tuple(int(n) for n in f.get("accepted_per_round", ()))
    failure = (setup_failure or (run_failure(watched, "the Flower simulation") if watched else None)
               or rounds_failure(rounds, devices, accepted))
    accuracy = f.get("accuracy_after_round") or [None]
    return ScaleRow(FLOWER, devices, rounds, tuple(float(s) for s in f.get("round_seconds", ())), accepted, failure,
                    watched.peaks if watched else (), watched.peak_total_rss_bytes if watched else 0,
                    watched.seconds if watched else 0.0, None, None, accuracy[-1],
                    train_seconds=tuple(float(s) for s in f.get("train_seconds_per_round", ())))


def training_notes(rows: Sequence[ScaleRow]) -> list[str]:
    """Per Flower row: how much of each round its ClientApps spent in DMSKD's local training."""
    notes = []
    for r in rows:
        if r.system == FLOWER and r.train_seconds:
            pairs = ", ".join(f"{t:.2f} of {s:.2f} s" for t, s in zip(r.train_seconds, r.round_seconds))
            notes.append(f"Flower at {r.devices:,} devices: DMSKD's local training inside the ClientApp calls, "
                         f"summed over devices (two run at once), per round: {pairs}")
    return notes


def peak_summary(peaks: Sequence[ProcessPeak], limit: int = 4) -> str:
    """Peak RSS by kind of process, largest first: `python -m simulator run 812 MB; mosquitto 9 MB`."""
    groups: dict[str, list[int]] = {}
    for p in peaks:
        groups.setdefault(p.label, []).append(p.peak_rss_bytes)
    ordered = sorted(groups.items(), key=lambda kv: -max(kv[1]))
    parts = [f"{label} {max(v) / MB:,.0f} MB" if len(v) == 1 else f"{label} x{len(v)} max {max(v) / MB:,.0f} MB"
             for label, v in ordered[:limit]]
    if len(ordered) > limit:
        rest = sum(len(v) for _, v in ordered[limit:])
        parts.append(f"{rest} more, max {max(max(v) for _, v in ordered[limit:]) / MB:,.0f} MB")
    return "; ".join(parts) or "-"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _status(row: ScaleRow) -> str:
    return "yes" if row.completed else f"did not complete: {row.failure}"


TABLE_HEADER = ("| system | devices | completed | s / round | ms / device-round | s / round after the first | "
                "bytes / round (payload up + down) | update bytes / device-round (MQTT) | peak RSS per process | "
                "peak RSS, whole tree | wall s | test accuracy | load at start |")


def scale_table(rows: Sequence[ScaleRow]) -> str:
    """The Markdown table of every row."""
    lines = [TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    for r in rows:
        run = f" (run {r.repeat + 1})" if r.repeat else ""
        lines.append(f"| {r.system} | {r.devices:,}{run} | {_status(r)} | {_num(r.seconds_per_round, '.3f')} | "
                     f"{_num(r.ms_per_device_round, '.2f')} | {_num(r.steady_seconds_per_round, '.3f')} | "
                     f"{_num(r.bytes_per_round, ',.0f')} | {_num(r.update_bytes_per_device_round, ',.0f')} | "
                     f"{peak_summary(r.peaks)} | {r.peak_total_rss_bytes / MB:,.0f} MB | {r.wall_seconds:.0f} | "
                     f"{_num(r.accuracy, '.4f')} | {' '.join(f'{x:.1f}' for x in r.load_average) or '-'} |")
    return "\n".join(lines)


def _spread(ratios: Sequence[float]) -> str:
    """The median ratio; over several runs also its range, so a reader sees whether the spread covers a goal."""
    if not ratios:
        return "-"
    median = f"{statistics.median(ratios):.1f}x"
    return median if len(ratios) == 1 else f"{median} ({min(ratios):.1f}-{max(ratios):.1f}x over {len(ratios)} runs)"


def _paired(rows: Sequence[ScaleRow], n: int) -> list[tuple[ScaleRow, ScaleRow]]:
    """(DMSKD, Flower) rows of fleet size n, paired by repeat (each pair ran back to back)."""
    dmskd = {r.repeat: r for r in rows if r.system == DMSKD and r.devices == n}
    flower = {r.repeat: r for r in rows if r.system == FLOWER and r.devices == n}
    return [(dmskd[k], flower[k]) for k in sorted(set(dmskd) & set(flower))]


def ratio_table(rows: Sequence[ScaleRow]) -> str:
    """Flower's per-round time over DMSKD's at every fleet size both ran: all rounds, and after the first; with
    --repeats the median of the runs' ratios and their range."""
    lines = ["| devices | DMSKD s / round | Flower s / round | Flower / DMSKD | Flower / DMSKD after the first round | "
             "both completed |", "|---|---|---|---|---|---|"]
    for n in sorted({r.devices for r in rows}):
        pairs = _paired(rows, n)
        if not pairs:
            continue
        d_s = [d.seconds_per_round for d, _ in pairs if d.seconds_per_round is not None]
        f_s = [f.seconds_per_round for _, f in pairs if f.seconds_per_round is not None]
        overall = [f.seconds_per_round / d.seconds_per_round for d, f in pairs
                   if f.seconds_per_round is not None and d.seconds_per_round]
        steady = [f.steady_seconds_per_round / d.steady_seconds_per_round for d, f in pairs
                  if f.steady_seconds_per_round is not None and d.steady_seconds_per_round]
        lines.append(f"| {n:,} | {_num(statistics.median(d_s) if d_s else None, '.3f')} | "
                     f"{_num(statistics.median(f_s) if f_s else None, '.3f')} | {_spread(overall)} | "
                     f"{_spread(steady)} | {'yes' if all(d.completed and f.completed for d, f in pairs) else 'no'} |")
    return "\n".join(lines)


def commands_of(rows: Sequence[ScaleRow], command: str) -> list[str]:
    """One line per command that measured rows, with the sizes it measured (the current one if none)."""
    by_command: dict[str, list[str]] = {}
    for r in rows:
        by_command.setdefault(r.command or command, []).append(f"{r.system.split()[0]} {r.devices:,}")
    return [f"`{c}` ({', '.join(sizes)})" for c, sizes in by_command.items()] or [f"`{command}`"]


def report_markdown(rows: Sequence[ScaleRow], machine: dict, command: str, notes: Sequence[str] = ()) -> str:
    """bench_scale.md: what was measured, on what, by which command; the tables; the notes."""
    text = [
        "# bench-scale: DMSKD over MQTT against fleet size, beside Flower's simulation engine",
        "",
        *[f"Command: {line}" for line in commands_of(rows, command)],
        "",
        f"Machine: {machine.get('cpus')} cores, {machine.get('memory_gb')} GB, no GPU; {machine.get('platform')}; "
        f"Python {machine.get('python')}; {machine.get('mosquitto', 'mosquitto ?')}"
        + (f"; flwr {machine['flwr']}, ray {machine['ray']}" if machine.get("flwr") else "") + ".",
        "",
        "A round's seconds: DMSKD's aggregator from opening the round to closing it (metrics.json `history`); "
        "Flower's from the end of one centralised evaluation to the start of the next (flower_side.py). Both "
        "train the same student program in LiteRT with the same local training (edge/local_training.py) on the "
        "same split (`--device-sampling pool`, same seed). The first round of either also pays for start-up "
        "(artefacts and shard logits on DMSKD's devices; Ray actors and their imports on Flower's). Peak RSS is "
        "sampled every 0.2 s over each run's process tree (psutil); DMSKD's `simulator run` process holds the "
        "cloud side (TensorFlow), the aggregator and every simulated device. Bytes: payload bytes every device "
        "sent and received per round (simulator/traffic.py); Flower moves its arrays in memory (no wire). The load "
        "average (of the whole machine, 2 cores) when each run started says how shared the machine was.",
        "",
        "## Per fleet size",
        "",
        scale_table(rows),
        "",
        "## Flower / DMSKD, same student, split and rounds",
        "",
        ratio_table(rows),
        "",
    ]
    notes = [*training_notes(rows), *notes]
    if notes:
        text += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(text)


def plot_scale(rows: Sequence[ScaleRow], path) -> None:
    """PNG: ms per device-round against fleet size (log x and y), one colour per system: solid over every round,
    dashed over the rounds after the first; open markers: did not complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    plotted = False
    for system, marker, colour in ((DMSKD, "o", "tab:blue"), (FLOWER, "s", "tab:orange")):
        mine = sorted((r for r in rows if r.system == system and r.seconds_per_round is not None),
                      key=lambda r: r.devices)
        if not mine:
            continue
        plotted = True
        n = [r.devices for r in mine]
        ax.plot(n, [1000 * (r.seconds_per_round or 0) / r.devices for r in mine], marker=marker, color=colour,
                label=f"{system}: every round")
        steady = [(r.devices, 1000 * r.steady_seconds_per_round / r.devices) for r in mine
                  if r.steady_seconds_per_round is not None]
        if steady:
            ax.plot(*zip(*steady), marker=marker, color=colour, linestyle="--", alpha=0.7,
                    label=f"{system}: after the first round")
        failed = [(r.devices, 1000 * (r.seconds_per_round or 0) / r.devices) for r in mine if not r.completed]
        if failed:
            ax.plot(*zip(*failed), linestyle="none", marker=marker, markersize=12, markerfacecolor="none",
                    color="red", label=f"{system}: did not complete")
    ax.set_xscale("log")
    ax.set_xlabel("devices (log scale)")
    ax.set_ylabel("ms per device-round (log scale)")
    if plotted:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no run closed a round", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
