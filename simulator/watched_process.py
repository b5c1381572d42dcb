"""Run one command as a child process group, sampling the peak RSS of it and every descendant, with a timeout.

What bench-scale needs of each run (`python -m simulator run`, `prepare`, the Flower side): its exit code or
that it timed out, its output lines as they come (progress) and its last lines (the reason of a failure),
and the largest resident set each process reached, sampled every `interval_s` (psutil; a process that lives
shorter than one interval may be missed). A run that overstays its timeout gets SIGTERM, then SIGKILL, to its
own process group only (start_new_session): the broker and workers it started go with it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

TAIL_LINES = 40


@dataclass(frozen=True)
class ProcessPeak:
    """The largest resident set one process reached, under a label saying what it was."""

    label: str
    pid: int
    peak_rss_bytes: int


@dataclass(frozen=True)
class Watched:
    """How a watched command ended and what it used."""

    command: tuple[str, ...]
    returncode: int | None  # None: killed at the timeout
    seconds: float
    timeout_s: float
    peaks: tuple[ProcessPeak, ...]
    peak_total_rss_bytes: int  # the largest sum over the process tree at one sample
    tail: tuple[str, ...]  # its last output lines

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def last_line(self) -> str:
        """The last non-empty output line (a failing verb's one-line error), or ''."""
        return next((line for line in reversed(self.tail) if line.strip()), "")


def process_label(name: str, cmdline: Sequence[str]) -> str:
    """What a process is, in a few words: `python -m simulator run`, `mosquitto`, `raylet`, `ray::ClientAppActor`."""
    args = list(cmdline)
    if args and args[0].startswith("ray::"):
        return args[0].split()[0]
    if "-m" in args[:-1]:
        i = args.index("-m")
        module = args[i + 1]
        verb = args[i + 2] if len(args) > i + 2 and not args[i + 2].startswith("-") else ""
        return f"python -m {module} {verb}".strip()
    if not args:
        return name
    base = os.path.basename(args[0])
    script = next((a for a in args[1:] if not a.startswith("-")), None)
    if base.startswith("python") and script is not None:
        return f"python {os.path.basename(script)}"
    return base or name


def _sample(root: psutil.Process, peaks: dict[int, ProcessPeak]) -> int:
    """Record every live process of the tree's RSS; return their sum."""
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in tree:
        try:
            rss = proc.memory_info().rss
            label = process_label(proc.name(), proc.cmdline())  # again each time: Ray renames its workers
        except psutil.Error:
            continue
        total += rss
        peak = max(rss, peaks[proc.pid].peak_rss_bytes) if proc.pid in peaks else rss
        peaks[proc.pid] = ProcessPeak(label, proc.pid, peak)
    return total


def _stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the child's own process group, SIGKILL after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def watch(command: Sequence[str], timeout_s: float, log_path: Path, env: dict[str, str] | None = None,
          on_line: Callable[[str], None] = lambda line: None, interval_s: float = 0.2,
          cwd: Path | None = None) -> Watched:
    """Run `command` to its end or `timeout_s`; its output (stdout and stderr) goes to `log_path` and `on_line`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    peaks: dict[int, ProcessPeak] = {}
    peak_total = 0
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, text=True, errors="replace", bufsize=1,
                                start_new_session=True)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                for part in line.rstrip("\n").split("\r"):  # tqdm redraws with carriage returns
                    if part.strip():
                        tail.append(part)
                        on_line(part)

        reader = threading.Thread(target=read, name="watched-output", daemon=True)
        reader.start()
        root = psutil.Process(proc.pid)
        while proc.poll() is None and time.monotonic() - started < timeout_s:
            peak_total = max(peak_total, _sample(root, peaks))
            time.sleep(interval_s)
        returncode = proc.poll()
        if returncode is None:
            _stop_group(proc)
        else:
            with contextlib.suppress(ProcessLookupError):  # whatever it left running in its own group
                os.killpg(proc.pid, signal.SIGTERM)
        reader.join(timeout=10)
    return Watched(tuple(command), returncode, time.monotonic() - started, timeout_s,
                   tuple(sorted(peaks.values(), key=lambda p: -p.peak_rss_bytes)), peak_total, tuple(tail))
