"""Benchmark: a receiver's memory under a flood of chunk streams that never complete (issue 10).

Starts mosquitto on loopback, subscribes one MqttSession to a fleet's update topics, and floods it with
N first-chunks of ~1000 KiB (each from a message that declares 4 MiB), then prints the receiver's
stored reassembly bytes, its evictions and this process's resident memory before and after.
    python scripts/bench_reassembly_memory.py [N]
"""

from __future__ import annotations

import gc
import sys
import time

import paho.mqtt.client as mqtt

from edge.chunking import split_message
from edge.mqtt_session import MqttSession
from simulator.broker import MosquittoBroker

KIB = 1024


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc)."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main(flood: int = 1000) -> None:
    with MosquittoBroker() as broker:
        receiver = MqttSession("bench-receiver", broker.host, broker.port)
        receiver.subscribe("dmskd/bench/round/+/update/+", lambda t, p: None)
        receiver.connect()
        attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-flooder", protocol=mqtt.MQTTv311)
        attacker.connect(broker.host, broker.port)
        attacker.loop_start()
        payload = bytes(4 * 1024 * KIB)
        gc.collect()
        before = rss_mb()
        started = time.monotonic()
        for i in range(flood):
            chunk = split_message(payload, f"f{i:05d}", 1000 * KIB)[0]
            attacker.publish(f"dmskd/bench/round/0/update/d{i % 10}/0", chunk, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 30
        while sum(receiver.reassembly.evictions.values()) < flood - 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        gc.collect()
        after = rss_mb()
        print(f"{flood} chunks of {len(chunk) / KIB:.0f} KiB on 10 device topics "
              f"in {time.monotonic() - started:.1f} s; "
              f"stored {receiver.reassembly.stored_bytes / KIB / KIB:.1f} MiB; evictions "
              f"{dict(receiver.reassembly.evictions)}; RSS {before:.0f} MB -> {after:.0f} MB")
        attacker.loop_stop()
        receiver.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
