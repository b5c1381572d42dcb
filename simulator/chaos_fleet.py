"""A fleet as real processes for the chaos benchmark: mosquitto, `python -m cloud aggregate`, `python -m edge run`.

`ChaosFleet` starts and kills them (SIGKILL, as a crash would), samples their resident memory every
0.2 s (psutil) and follows the run through the aggregator's checkpoint (state.json, rewritten each
round), calling the hooks registered with `at_round` when a round has closed. Child logs go to the
fleet's work directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import psutil

from edge.signed_artifact import PUBLIC_KEY_FILE
from edge.topics import FleetTopics
from simulator.broker import MosquittoBroker, free_port

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.2


class PersistentMosquitto(MosquittoBroker):
    """mosquitto whose retained messages survive a restart: a persistence directory outside the broker's
    throwaway work directory, saved every second (mosquitto's default, 1800 s, would save nothing before
    a kill -9)."""

    def __init__(self, persistence_dir: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.persistence_dir = Path(persistence_dir).resolve()
        self.persistence_dir.mkdir(parents=True, exist_ok=True)

    def config_text(self) -> str:
        text = super().config_text().replace("persistence false\n", "")
        return text + f"persistence true\npersistence_location {self.persistence_dir}/\nautosave_interval 1\n"


@dataclass(frozen=True)
class Prepared:
    """What `python -m simulator prepare --out DIR` wrote: DIR/bundle, DIR/devices/<id>.npz, the signing keys."""

    root: Path
    fleet: str
    rounds: int
    devices: tuple[str, ...]

    @classmethod
    def from_dir(cls, root: Path) -> Prepared:
        bundle = json.loads((root / "bundle" / "bundle.json").read_text())
        plans = json.loads((root / "bundle" / "plans.json").read_text())
        return cls(root, bundle["fleet"], int(bundle["rounds"]), tuple(p["device"] for p in plans))

    def with_rounds(self, rounds: int, dest: Path) -> Prepared:
        """A copy in dest whose bundle runs `rounds` rounds (same teacher, shards, student and data)."""
        if rounds == self.rounds:
            return self
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.root, dest)
        for name in ("bundle.json", "plans.json"):
            path = dest / "bundle" / name
            raw = json.loads(path.read_text())
            for entry in raw if isinstance(raw, list) else [raw]:
                entry["rounds"] = rounds
            path.write_text(json.dumps(raw, indent=2))
        return Prepared.from_dir(dest)


class ChaosFleet:
    """One run's broker, aggregator and devices; `close()` kills whatever is left."""

    def __init__(self, prepared: Prepared, work: Path, deadline_s: float, persistent_broker: bool = False) -> None:
        self.prepared, self.work, self.deadline_s = prepared, work, deadline_s
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()  # fixed, so a restarted broker is where every client reconnects
        self.broker = (PersistentMosquitto(work / "broker-data", port=port) if persistent_broker
                       else MosquittoBroker(port=port))
        self.topics = FleetTopics(prepared.fleet)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[IO[bytes]] = []
        self.peak_rss: dict[str, int] = {}
        self.closed_at: list[float] = []  # when each round's checkpoint was first seen
        self.history: list[dict] = []
        self._hooks: list[tuple[int, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchers: list[mqtt.Client] = []
        self._sampler = threading.Thread(target=self._sample, name="chaos-sampler", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def start(self, late: frozenset[str] = frozenset()) -> ChaosFleet:
        """Broker, aggregator, then every device not in `late`; starts the sampler."""
        self.broker.start()
        self.start_aggregator()
        for device in self.prepared.devices:
            if device not in late:
                self.start_device(device)
        self._sampler.start()
        return self

    def _spawn(self, role: str, args: list[str]) -> None:
        log = open(self.work / f"{role}.log", "ab")  # noqa: SIM115 - closed in close(); appended across restarts
        self._logs.append(log)
        self.procs[role] = subprocess.Popen([sys.executable, "-m", *args, "--log-level", "WARNING"], cwd=REPO,
                                            stdout=log, stderr=subprocess.STDOUT)

    def start_aggregator(self) -> None:
        """`python -m cloud aggregate` on the fleet's checkpoint (a restart resumes from it)."""
        self._spawn("aggregator", ["cloud", "aggregate", "--bundle", str(self.prepared.root / "bundle"),
                                   "--checkpoint", str(self.work / "checkpoint"), "--broker", self.address,
                                   "--deadline", str(self.deadline_s)])

    def start_device(self, device: str) -> None:
        seed = self.prepared.devices.index(device)
        self._spawn(device, ["edge", "run", "--device", device, "--fleet", self.prepared.fleet,
                             "--data", str(self.prepared.root / "devices" / f"{device}.npz"),
                             "--broker", self.address, "--outbox", str(self.work / "outbox"),
                             "--fleet-key", str(self.prepared.root / PUBLIC_KEY_FILE), "--insecure-seed", str(seed)])

    def kill(self, role: str) -> None:
        """SIGKILL a child (no clean shutdown) and reap it."""
        proc = self.procs[role]
        proc.kill()
        proc.wait(timeout=10)

    def kill_broker(self) -> None:
        assert self.broker._proc is not None
        self.broker._proc.kill()  # SIGKILL: nothing saved beyond the last autosave
        self._stop_broker()

    def _stop_broker(self) -> None:
        """Stop the broker, keeping its log (its own work directory goes with it) in the fleet's."""
        if self.broker.log_path is not None and self.broker.log_path.exists():
            with open(self.work / "broker.log", "ab") as kept:
                kept.write(self.broker.log_path.read_bytes())
        self.broker.stop()

    def at_round(self, closed: int, action: Callable[[], None]) -> None:
        """Run action (on its own thread) once `closed` rounds have closed."""
        with self._lock:
            self._hooks.append((closed, action))

    def on_first_update(self, round_: int, action: Callable[[], None]) -> None:
        """Run action (on its own thread) when the broker carries the first update chunk of `round_`."""
        fired = threading.Event()
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-watcher", protocol=mqtt.MQTTv311)

        def on_message(*_: object) -> None:
            if not fired.is_set():
                fired.set()
                threading.Thread(target=action, name="chaos-trigger", daemon=True).start()
                threading.Thread(target=watcher.disconnect, daemon=True).start()

        watcher.on_message = on_message
        watcher.on_connect = lambda c, *_: c.subscribe(f"{self.topics.update(round_, '+')}/+", qos=0)
        watcher.connect(self.broker.host, self.broker.port)
        watcher.loop_start()
        self._watchers.append(watcher)

    def wait(self, timeout_s: float, devices_grace_s: float = 60.0,
             on_tick: Callable[[int], None] | None = None) -> bool:
        """Until every child has exited (True); False after timeout_s, when the aggregator failed (an exit code
        other than 0 or a SIGKILL), or when devices still run devices_grace_s after the aggregator finished.
        on_tick: called with the number of closed rounds every poll."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.poll() is not None for p in self.procs.values()):
                return True
            code = self.procs["aggregator"].poll()
            if code is not None and code not in (0, -9):
                return False
            if code == 0:
                deadline = min(deadline, time.monotonic() + devices_grace_s)
            if on_tick is not None:
                on_tick(len(self.history))
            time.sleep(POLL_S)
        return False

    def _sample(self) -> None:
        while not self._stop.is_set():
            targets = {role: p.pid for role, p in self.procs.items() if p.poll() is None}
            if self.broker._proc is not None:
                targets["broker"] = self.broker._proc.pid
            for role, pid in targets.items():
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), rss)
            self._follow_checkpoint()
            self._stop.wait(POLL_S)

    def closed_rounds(self) -> int:
        """Rounds closed by now (the checkpoint read afresh, not the last poll's)."""
        self._follow_checkpoint()
        return len(self.history)

    def broker_dropped(self) -> list[str]:
        """Clients mosquitto said it dropped outgoing messages for (its queue for them was full)."""
        marker = "Outgoing messages are being dropped for client "
        return sorted({line.split(marker, 1)[1].rstrip(". ") for line in self.log_text("broker").splitlines()
                       if marker in line})

    def _follow_checkpoint(self) -> None:
        try:
            history = json.loads((self.work / "checkpoint" / "state.json").read_text())["history"]
        except (FileNotFoundError, ValueError, KeyError):
            return
        now = time.monotonic()
        with self._lock:
            self.closed_at += [now] * (len(history) - len(self.closed_at))
            self.history = history
            due = [a for n, a in self._hooks if n <= len(history)]
            self._hooks = [(n, a) for n, a in self._hooks if n > len(history)]
        for action in due:
            threading.Thread(target=action, name="chaos-hook", daemon=True).start()

    def close(self) -> None:
        """Kill every child still running, stop the broker, take a last look at the checkpoint."""
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join(timeout=5)
        for watcher in self._watchers:
            watcher.loop_stop()
        self._watchers.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self._stop_broker()
        self._follow_checkpoint()
        for log in self._logs:
            log.close()

    def log_text(self, role: str) -> str:
        path = self.work / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""
