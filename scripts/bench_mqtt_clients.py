"""Benchmark: N device-like MqttSessions in one process against one mosquitto (issue 11, item 3).

Each device subscribes to three topics of its own (plan, cohort, results), connects, then in the exchange phase
subscribes to the retained 20 KB model a server session published (a device reading the global model) and publishes
a 20 KB update in 8 KiB chunks (3 chunks) that the server reassembles (an aggregator's inbox; its reassembly bound is
raised to N x 24 KB, since N updates arriving at once hold up to N partial messages). Devices run on one
shared MqttLoop (`--mode loop`, the default) or on a paho thread each (`--mode thread`, the old way, which fails at
~338 sessions: descriptors above 1023). The server keeps a thread of its own, like the aggregator.

This process raises its RLIMIT_NOFILE soft limit to the hard limit before starting mosquitto, which inherits it (and
is checked with prlimit); mosquitto runs with `max_connections -1` and `max_queued_messages` 4 N (its default of 1000
QoS 1 messages queued per client drops most of the server's N x 3 update chunks beyond ~330 devices).

    python scripts/bench_mqtt_clients.py N [N ...] [--mode loop|thread] [--tcp-nodelay] [--json]

Prints per N: seconds to connect all (one after the other, as run_federation starts its agents), seconds until
every device has the model and until the server also has every update, this process's RSS once all are connected
and at its peak (ru_maxrss), mosquitto's RSS (psutil), the threads this process used, failures grouped by reason.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

import psutil

from edge.mqtt_loop import MqttLoop, open_file_limits, raise_open_file_limit
from edge.mqtt_session import MqttSession
from simulator.broker import MosquittoBroker

KB = 1000
CHUNK_LIMIT = 8 * 1024


class BenchBroker(MosquittoBroker):
    """The project's loopback mosquitto with no connection cap, a queue for the server's N x 3 update chunks
    (mosquitto's default, 1000 QoS 1 messages queued per client, drops the rest), optionally TCP_NODELAY."""

    def __init__(self, n: int, tcp_nodelay: bool) -> None:
        super().__init__(startup_timeout=20.0)
        self.n, self.tcp_nodelay = n, tcp_nodelay

    def config_text(self) -> str:
        text = super().config_text().replace("connection_messages true", "connection_messages false")
        return (text + f"max_connections -1\nmax_queued_messages {max(1000, 4 * self.n)}\n"
                + ("set_tcp_nodelay true\n" if self.tcp_nodelay else ""))


@dataclass
class Result:
    n: int
    mode: str
    connected: int
    connect_s: float
    exchange_s: float | None  # until every device has the model and the server every update
    models_s: float | None  # until every device has the model
    models_received: int
    updates_received: int
    rss_connected_mib: float  # this process once every device is connected
    rss_peak_mib: float
    broker_rss_mib: float
    threads: int
    failures: dict[str, int] = field(default_factory=dict)


class Tally:
    """Counts whole messages of the expected size from many sessions (any thread); waits for a total."""

    def __init__(self, size: int) -> None:
        self.size, self.count, self.wrong = size, 0, 0
        self._cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._cond:
            if len(payload) == self.size:
                self.count += 1
            else:
                self.wrong += 1
            self._cond.notify_all()

    def wait_for(self, total: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= total, timeout)


def reason(exc: BaseException) -> str:
    """A failure's message without the client's name, so equal causes group together."""
    text = str(exc)
    for marker in (": connection refused", "out of file descriptors", "select(), which", "sent no CONNACK",
                   "no answer to the TCP connect"):
        if marker in text:
            return marker.strip(": ")
    return text[:160]


def rss_mib(process: psutil.Process) -> float:
    try:
        return process.memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def run(n: int, mode: str, tcp_nodelay: bool, timeout: float) -> Result:
    raise_open_file_limit(n + 1024)  # before mosquitto starts: it inherits the limit
    run_id = uuid.uuid4().hex[:8]
    root = f"dmskd/bench-{run_id}"
    failures: Counter[str] = Counter()
    threads = threading.active_count()
    with BenchBroker(n, tcp_nodelay) as broker:
        assert broker._proc is not None
        mosquitto = psutil.Process(broker._proc.pid)
        soft, hard = resource.prlimit(broker._proc.pid, resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < n + 64:
            resource.prlimit(broker._proc.pid, resource.RLIMIT_NOFILE, (hard, hard))
        server = MqttSession(f"bench-server-{run_id}", broker.host, broker.port, chunk_limit=CHUNK_LIMIT)
        updates = Tally(20 * KB)
        # N updates arrive interleaved: up to N partial ones at once (2 of 3 chunks each), over the default 32 MiB
        server.reassembly.max_total_bytes = max(server.reassembly.max_total_bytes, n * 24 * KB)
        server.subscribe(f"{root}/update/+", updates)
        server.connect()
        model = Tally(20 * KB)
        loop = MqttLoop(name="bench-devices") if mode == "loop" else None
        devices: list[MqttSession] = []
        started = time.monotonic()
        for i in range(n):
            device = MqttSession(f"bench-{run_id}-{i:05d}", broker.host, broker.port, chunk_limit=CHUNK_LIMIT,
                                 loop=loop)
            for topic in (f"{root}/plan/{i}", f"{root}/cohort/{i}", f"{root}/results"):
                device.subscribe(topic, model)
            try:
                devices.append(device.connect(timeout=10))
            except (ConnectionError, RuntimeError) as exc:
                failures[reason(exc)] += 1
        connect_s = time.monotonic() - started
        threads = max(threads, threading.active_count())
        broker_rss = rss_mib(mosquitto)
        rss_connected = rss_mib(psutil.Process())

        started = time.monotonic()
        server.publish(f"{root}/model", bytes(20 * KB), retain=True)
        update = bytes(20 * KB)
        for device in devices:
            device.subscribe(f"{root}/model", model)  # the broker sends the retained model at once
            device.publish(f"{root}/update/{device.client_id}", update, wait=False)
        models_done = model.wait_for(len(devices), timeout)
        models_s = time.monotonic() - started if models_done else None
        done = models_done and updates.wait_for(len(devices), timeout)
        exchange_s = time.monotonic() - started if done else None
        threads = max(threads, threading.active_count())
        broker_rss = max(broker_rss, rss_mib(mosquitto))
        if not done:
            failures[f"exchange incomplete after {timeout:.0f} s"] += 1
        if server.reassembly.evictions:
            failures[f"server evicted partial updates {dict(server.reassembly.evictions)}"] += 1
        if model.wrong or updates.wrong:
            failures["a message of the wrong size"] += model.wrong + updates.wrong
        for device in devices:
            device.close()
        server.clear_retained(f"{root}/model", 3)
        server.close()
    gc.collect()
    return Result(n, mode, len(devices), round(connect_s, 2), _round(exchange_s), _round(models_s),
                  model.count, updates.count, round(rss_connected, 1),
                  round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), round(broker_rss, 1), threads,
                  dict(failures))


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="+", help="devices (several: one run each, in order)")
    parser.add_argument("--mode", choices=("loop", "thread"), default="loop",
                        help="devices on one shared MqttLoop (default) or on a paho thread each")
    parser.add_argument("--tcp-nodelay", action="store_true", help="mosquitto's set_tcp_nodelay true")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the exchange may take")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    args = parser.parse_args(argv)
    soft, hard = open_file_limits()
    if not args.json:
        print(f"# mode {args.mode}; RLIMIT_NOFILE {soft}/{hard}; mosquitto set_tcp_nodelay {args.tcp_nodelay}")
        print(f"{'N':>6} {'connected':>9} {'connect s':>9} {'models s':>8} {'exchange s':>10} {'RSS MiB':>7} "
              f"{'peak MiB':>8} {'broker MiB':>10} {'threads':>7}  failures")
    for n in args.n:
        result = run(n, args.mode, args.tcp_nodelay, args.timeout)
        if args.json:
            print(json.dumps(asdict(result)))
        else:
            exchange = "-" if result.exchange_s is None else f"{result.exchange_s:.2f}"
            models = "-" if result.models_s is None else f"{result.models_s:.2f}"
            failed = "; ".join(f"{count} x {why}" for why, count in result.failures.items()) or "none"
            print(f"{result.n:>6} {result.connected:>9} {result.connect_s:>9.2f} {models:>8} {exchange:>10} "
                  f"{result.rss_connected_mib:>7.1f} {result.rss_peak_mib:>8.1f} {result.broker_rss_mib:>10.1f} "
                  f"{result.threads:>7}  {failed}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
