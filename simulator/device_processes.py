"""`--device-processes P`: the local engine's devices in P child processes, the aggregator staying in this one.

One process of Python runs one core: at 10,000 devices run_federation's single process spends a round's
time in its devices' interpreter lock (DeviceAgent handlers, paho, the wire codec), while the other core
idles. DeviceProcesses deals the devices, in contiguous groups (simulator.ray_federation.device_groups), to
P `python -m simulator.device_group_process` children, each a simulator.ray_device_host.DeviceHost with an
MqttLoop and a worker pool of its own, dialling the same broker over TCP. Every device gets the same data,
seed and fleet key as in one process, so a seeded run gives the same weights. It has the interface of
DeviceHost (`start`, `wait_prepared`, `wait`, `stop`) and `check`, which raises DeviceProcessFailed, naming the
device group, its exit code and the end of its log, once a child has died: a run fails instead of waiting on the
dead.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from simulator.device_group_process import read_frame, write_frame
from simulator.ray_device_host import DeviceReport, HostedDevice, HostSettings

log = logging.getLogger("dmskd.simulator")

AUTO_SPLIT_DEVICES = 500  # --device-processes auto: one process below this many devices, one per core from it
TAIL_LINES = 12  # of a failed child's log, in its error
START_TIMEOUT_S = 120.0  # for a child to import, connect its devices and report (plus 20 ms per device)
STOP_TIMEOUT_S = 60.0  # for a child to stop its devices and send their reports


class DeviceProcessFailed(RuntimeError):
    """A child hosting devices died, hung or answered out of turn; the message names its group and log."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def device_process_count(requested: int | None, devices: int, cores: int | None = None) -> int:
    """How many processes host `devices`: `requested` (at most one per device), or for None (auto) 1 below
    AUTO_SPLIT_DEVICES devices, else one per core (a child's start costs about a second; small fleets gain none)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--device-processes must be auto or at least 1, got {requested}")
        return min(requested, devices)
    return 1 if devices < AUTO_SPLIT_DEVICES else max(1, min(cores or usable_cores(), devices))


@dataclass
class DeviceProcess:
    """One child: its devices, the process, its log, and the frames it sent (None once its stdout ended)."""

    label: str
    device_ids: list[str]
    proc: subprocess.Popen
    log_path: Path
    replies: queue.Queue = field(default_factory=queue.Queue)
    stopped: bool = False

    def read_replies(self) -> None:
        """The reader thread: every frame the child writes, then None when its stdout ends."""
        assert self.proc.stdout is not None
        try:
            while True:
                self.replies.put(read_frame(self.proc.stdout))
        except (EOFError, OSError, ValueError):
            pass
        except Exception:  # an unreadable frame: the child is broken, and says so in its log
            log.exception("%s sent an unreadable frame", self.label)
        self.replies.put(None)

    def send(self, message: object) -> None:
        """Write one frame to the child; DeviceProcessFailed if it is gone."""
        assert self.proc.stdin is not None
        try:
            write_frame(self.proc.stdin, message)
        except (BrokenPipeError, ValueError, OSError):
            raise DeviceProcessFailed(self.failure("stopped reading its commands")) from None

    def reply(self, kind: str, timeout_s: float) -> object:
        """The child's next frame, which must be `kind`; its value. DeviceProcessFailed otherwise."""
        try:
            message = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            raise DeviceProcessFailed(self.failure(f"sent no {kind!r} within {timeout_s:g} s")) from None
        if message is None:
            raise DeviceProcessFailed(self.failure(f"ended before sending {kind!r}"))
        if message[0] != kind:
            raise DeviceProcessFailed(self.failure(f"sent {message[0]!r} where {kind!r} was due"))
        return message[1]

    def failure(self, what: str) -> str:
        """What went wrong, how the process ended and the end of its log: one error message."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            how = "is still running (killed now)"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name} (exit code {code})"
        else:
            how = f"exited with code {code}"
        return (f"{self.label} {what}: the process {how}; the end of its log {self.log_path}:\n"
                f"{log_tail(self.log_path)}")

    def dead(self) -> bool:
        """Whether the child ended without being told to stop."""
        return not self.stopped and self.proc.poll() is not None

    def kill(self) -> None:
        """End the child (SIGKILL) and reap it, if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a log, indented; '(empty)' if it holds none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = collections.deque(f, maxlen=lines)
    except OSError as exc:
        return f"    (unreadable: {exc})"
    return "".join(f"    {line}" for line in tail).rstrip("\n") or "    (empty)"


class DeviceProcesses:
    """P children hosting the fleet's devices: `start`, `wait`, `stop` as simulator.ray_device_host.DeviceHost,
    and `check` between rounds."""

    def __init__(self, settings: HostSettings, processes: int, log_dir: Path) -> None:
        self.settings, self.processes, self.log_dir = settings, processes, log_dir
        self.children: list[DeviceProcess] = []

    def start(self, devices: list[HostedDevice]) -> int:
        """Start the children, hand each its group, wait until every device is connected; how many started."""
        from simulator.ray_federation import device_groups  # ray itself loads only inside its engine

        groups = device_groups(len(devices), self.processes)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        level = logging.getLogger("dmskd").getEffectiveLevel()
        try:
            for i, group in enumerate(groups):
                ids = [devices[j].device_id for j in group]
                label = (f"device group {i + 1} of {len(groups)} ({len(ids)} devices, {ids[0]}..{ids[-1]})")
                log_path = self.log_dir / f"devices-{i + 1}.log"
                with open(log_path, "wb") as err:
                    proc = subprocess.Popen([sys.executable, "-m", "simulator.device_group_process"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
                child = DeviceProcess(label, ids, proc, log_path)
                self.children.append(child)
                threading.Thread(target=child.read_replies, name=f"device-group-{i + 1}-replies",
                                 daemon=True).start()
            for child, group in zip(self.children, groups, strict=True):
                child.send((self.settings, [devices[j] for j in group], level))
            timeout = START_TIMEOUT_S + 0.02 * len(devices)
            started = [cast(int, child.reply("started", timeout)) for child in self.children]
        except BaseException:
            self.kill()
            raise
        log.info("%d devices started in %d processes (%s)", sum(started), len(self.children), started)
        return sum(started)

    def check(self) -> None:
        """Raise DeviceProcessFailed if a child has died (its devices are gone from the run)."""
        for child in self.children:
            if child.dead():
                failure = child.failure("died during the run")
                self.kill()
                raise DeviceProcessFailed(failure)

    def wait_prepared(self, timeout_s: float) -> int:
        """Wait up to timeout_s for every device to be set up (DeviceHost.wait_prepared); how many are."""
        for child in self.children:
            child.send(("prepared", timeout_s))
        return sum(cast(int, child.reply("prepared", timeout_s + STOP_TIMEOUT_S)) for child in self.children)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for every device to have seen the final model; whether all did."""
        for child in self.children:
            child.send(("wait", timeout_s))
        return all(bool(child.reply("waited", timeout_s + STOP_TIMEOUT_S)) for child in self.children)

    def stop(self) -> dict[str, DeviceReport]:
        """Stop every device and collect every device's report; DeviceProcessFailed (after ending every child)
        if a child cannot answer. A second call returns {}."""
        reports: dict[str, DeviceReport] = {}
        try:
            for child in self.children:
                if child.dead():
                    raise DeviceProcessFailed(child.failure("died during the run"))
                child.send(("stop",))
            for child in self.children:
                got = child.reply("stopped", STOP_TIMEOUT_S)
                assert isinstance(got, dict)
                child.stopped = True
                missing = sorted(set(child.device_ids) - set(got))
                if missing:
                    raise DeviceProcessFailed(child.failure(f"reported no traffic for {len(missing)} of its devices "
                                                            f"({missing[0]}, ...)"))
                reports.update(got)
                child.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.kill()
        return reports

    def kill(self) -> None:
        """End every child still running; forget them."""
        for child in self.children:
            child.kill()
        self.children = []
