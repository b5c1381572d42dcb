"""Scoring of the chaos benchmark (`python -m simulator chaos`): pure functions of what a run left behind.

A run leaves the aggregator's round history (its checkpoint's state.json: per round `accepted`, the
device names whose updates it accepted, and `seconds`), what each device process printed when it
ended (`<device>: rounds done [...]`, the rounds it trained), and the harness's own observations
(when each round's checkpoint appeared, peak RSS). From them:

- an update is **lost** when a device that lived to the end of the run trained it (its `rounds done`
  lists the round) but the aggregator's history for that completed round does not accept it;
- an update is **invalid and accepted** when a round's accepted list names a device outside the
  fleet, names a device twice, or names a device that cannot have sent it (a device that lived to
  the end but did not train that round, or a killed device for a round after the one open when it
  was killed): more updates than genuine devices sent.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

RSS_SLACK_MB = 50.0  # issue 10: under a flood, RSS stays within this of the clean run's peak
SLOW_RATIO = 2.0  # issue 10: a broker restart finishes within 2x the clean time
_ROUNDS_DONE = re.compile(r"^(\S+): rounds done \[([0-9, ]*)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class DeviceRun:
    """What one device process did. trained: the rounds it printed as done (None when it did not live to the
    end, or printed nothing); last_round: for a device killed mid-run, the last round it may have trained."""

    device: str
    trained: frozenset[int] | None
    last_round: int | None = None


@dataclass(frozen=True)
class Score:
    """Rounds the history completed, and every lost (round, device) and invalid (round, device, why) update."""

    completed: int
    lost: tuple[tuple[int, str], ...]
    invalid: tuple[tuple[int, str, str], ...]


def rounds_done(log_text: str, device: str) -> frozenset[int] | None:
    """The rounds a `python -m edge run` output says `device` trained, or None when it never printed them."""
    for name, rounds in _ROUNDS_DONE.findall(log_text):
        if name == device:
            return frozenset(int(r) for r in rounds.replace(" ", "").split(",") if r)
    return None


def score(history: Sequence[dict], fleet: Collection[str], runs: Sequence[DeviceRun]) -> Score:
    """Lost and invalid updates of one run (module docstring for the definitions)."""
    by_device = {r.device: r for r in runs}
    accepted = {int(h["round"]): list(h["accepted"]) for h in history}
    lost = [(r, d.device) for d in runs if d.trained is not None for r in sorted(d.trained)
            if r in accepted and d.device not in accepted[r]]
    invalid = []
    for round_, names in sorted(accepted.items()):
        for i, name in enumerate(names):
            run = by_device.get(name)
            if name not in fleet:
                invalid.append((round_, name, "not a device of the fleet"))
            elif name in names[:i]:
                invalid.append((round_, name, "accepted twice in one round"))
            elif run is not None and run.trained is not None and round_ not in run.trained:
                invalid.append((round_, name, "the device did not train this round"))
            elif run is not None and run.last_round is not None and round_ > run.last_round:
                invalid.append((round_, name, f"the device was killed in round {run.last_round}"))
    return Score(len(accepted), tuple(lost), tuple(invalid))


def seconds_per_round(history: Sequence[dict], closed_at: Sequence[float]) -> float | None:
    """Wall seconds per completed round, from the first round's opening to the last one's close.

    closed_at[i]: when the harness saw round i's checkpoint; round 0 opened its `seconds` before that."""
    if not history or len(closed_at) < len(history):
        return None
    opened = closed_at[0] - float(history[0]["seconds"])
    return (closed_at[len(history) - 1] - opened) / len(history)


def deadline_rounds(history: Sequence[dict], deadline_s: float) -> tuple[int, ...]:
    """Rounds that stayed open until (about) their deadline."""
    return tuple(int(h["round"]) for h in history if float(h["seconds"]) >= deadline_s - 0.5)


@dataclass(frozen=True)
class FaultRow:
    """One line of the chaos table."""

    fault: str
    planned: int
    completed: int
    lost: int
    invalid: int
    aggregator_rss_mb: float
    device_rss_mb: float
    broker_rss_mb: float
    seconds_per_round: float | None
    ratio: float | None  # to the clean run's seconds per round
    at_deadline: tuple[int, ...]
    verdict: str
    notes: str = ""
    close_lag_s: float | None = None  # the longest a round stayed open after its last accepted update

    def to_dict(self) -> dict:
        return asdict(self)


def max_close_lag(history: Sequence[dict]) -> float | None:
    """The longest any round stayed open after its last accepted update (`close_lag_s`), or None."""
    lags = [float(h["close_lag_s"]) for h in history if h.get("close_lag_s") is not None]
    return max(lags) if lags else None


def verdict(planned: int, s: Score, at_deadline: Sequence[int], ratio: float | None,
            rss_over_clean_mb: float | None) -> str:
    """FAIL on lost or invalid updates or missing rounds; otherwise `ok`, or what was slow or grew."""
    problems = []
    if s.lost:
        problems.append(f"{len(s.lost)} lost")
    if s.invalid:
        problems.append(f"{len(s.invalid)} invalid accepted")
    if s.completed < planned:
        problems.append(f"{planned - s.completed} rounds missing")
    if problems:
        return "FAIL: " + ", ".join(problems)
    warnings = []
    if at_deadline:
        warnings.append(f"round {','.join(map(str, at_deadline))} waited for the deadline")
    if ratio is not None and ratio > SLOW_RATIO:
        warnings.append(f"{ratio:.1f}x clean time")
    if rss_over_clean_mb is not None and rss_over_clean_mb > RSS_SLACK_MB:
        warnings.append(f"RSS +{rss_over_clean_mb:.0f} MB over clean")
    return "slow/grew: " + "; ".join(warnings) if warnings else "ok"


def markdown_table(rows: Sequence[FaultRow]) -> str:
    """The table chaos.md and the terminal show."""
    head = ("| fault | rounds | lost | invalid | aggregator RSS MB | device RSS MB (max) | broker RSS MB "
            "| run s | s/round | x clean | close lag s | at deadline | verdict |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        spr = "-" if r.seconds_per_round is None else f"{r.seconds_per_round:.2f}"
        span = "-" if r.seconds_per_round is None else f"{r.seconds_per_round * r.completed:.1f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lag = "-" if r.close_lag_s is None else f"{r.close_lag_s:.2f}"
        lines.append(f"| {r.fault} | {r.completed}/{r.planned} | {r.lost} | {r.invalid} | {r.aggregator_rss_mb:.0f} "
                     f"| {r.device_rss_mb:.0f} | {r.broker_rss_mb:.0f} | {span} | {spr} | {ratio} | {lag} "
                     f"| {','.join(map(str, r.at_deadline)) or '-'} | {r.verdict} |")
    return "\n".join(lines)


def markdown_report(report: dict, table: str) -> str:
    """chaos.md: the command, the machine, the definitions, the table and what each fault did."""
    m, st = report["machine"], report["settings"]
    lines = ["# Chaos benchmark (issue 10)", "", f"`{report['command']}`", "",
             f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, CPU only, {m['platform']}, Python {m['python']}, "
             f"{m['mosquitto']}. Fleet: {st['devices']} devices x {st['rounds']} rounds (the flood rows and their "
             f"clean-long baseline: {st['flood_rounds']} rounds), deadline {st['deadline_s']} s, partial-chunk flood "
             f"{st['flood_mib']} MiB, garbage flood {st['garbage']} messages.", "",
             "## Definitions", "", (__doc__ or "").split("\n\n", 1)[1].strip(), "",
             "Peak RSS: the largest resident set the harness saw, sampling every 0.2 s (psutil); the device column is "
             "the maximum over devices (the broker's is mosquitto's). s/round: from round 0's opening (its "
             "checkpoint's time minus its `seconds`) to the last round's checkpoint, over the rounds completed; "
             "run s: the same span in all; x clean: against "
             "the clean row (the flood rows: against clean-long, run at their number of rounds). "
             "Close lag: the longest any round stayed open after its last accepted update. "
             "At deadline: rounds whose `seconds` reached the deadline. Verdict: FAIL on any lost or invalid update "
             f"or missing round; it also names rounds at the deadline, more than {SLOW_RATIO:g}x the clean "
             f"time and RSS more than {RSS_SLACK_MB:g} MB over the clean peak.", "",
             "## Table", "", table, "", "## Faults", ""]
    for name, d in report["details"].items():
        lines.append(f"- **{name}**: {d['description']}. {_rounds_summary(d)}; lost {d['lost'] or 'none'}; "
                     f"invalid {d['invalid'] or 'none'}; notes {json.dumps(d['notes'], default=str)}")
    return "\n".join(lines) + "\n"


def _rounds_summary(d: dict) -> str:
    """Which rounds accepted fewer than the whole fleet (and who was missing), and which were slow."""
    fleet = d["fleet"]
    short = [f"round {r}: {len(a)}/{len(fleet)} (missing {', '.join(x for x in fleet if x not in a)})"
             for r, a in enumerate(d["accepted"]) if len(a) < len(fleet)]
    seconds = d["round_seconds"]
    slow = [f"round {r} {x:.1f} s" for r, x in enumerate(seconds) if x > 1.0]
    median = f"median round {statistics.median(seconds):.2f} s" if seconds else "no round closed"
    return (f"Every round accepted all {len(fleet)}" if not short else "; ".join(short)) + \
        f"; {median}" + (f"; slow: {', '.join(slow)}" if slow else "")
