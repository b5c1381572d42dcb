"""The shared worker pool of many agents: each agent's items in order, never two at once, idle after silence."""

from __future__ import annotations

import threading
import time

from edge.device_workers import IDLE, DeviceWorkers


def test_each_agents_items_run_in_order_and_never_two_at_once() -> None:
    workers = DeviceWorkers(threads=4).start()
    seen: dict[int, list[int]] = {a: [] for a in range(20)}
    busy: set[int] = set()
    overlaps: list[int] = []
    lock = threading.Lock()

    def handler(agent: int):
        def handle(item: object) -> None:
            with lock:
                if agent in busy:
                    overlaps.append(agent)
                busy.add(agent)
            time.sleep(0.0005)
            with lock:
                busy.discard(agent)
                seen[agent].append(int(item))  # type: ignore[call-overload]
        return handle

    boxes = [workers.mailbox(handler(a), lambda: 3600.0) for a in range(20)]
    putters = [threading.Thread(target=lambda b=b: [b.put(i) for i in range(50)]) for b in boxes]
    for t in putters:
        t.start()
    for t in putters:
        t.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(len(v) < 50 for v in seen.values()):
        time.sleep(0.01)
    workers.stop()
    assert overlaps == []
    assert all(v == list(range(50)) for v in seen.values())


def test_a_silent_agent_gets_an_idle_item_and_a_busy_one_does_not() -> None:
    workers = DeviceWorkers(threads=1, tick_s=0.05).start()
    got: dict[str, list[object]] = {"quiet": [], "chatty": []}
    workers.mailbox(got["quiet"].append, lambda: 0.2)
    chatty = workers.mailbox(got["chatty"].append, lambda: 0.2)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        chatty.put("work")
        time.sleep(0.02)
    workers.stop()
    assert IDLE in got["quiet"]
    assert IDLE not in got["chatty"]


def test_a_failing_item_does_not_stop_the_pool_or_the_agent() -> None:
    workers = DeviceWorkers(threads=1).start()
    done = threading.Event()

    def handle(item: object) -> None:
        if item == "bad":
            raise RuntimeError("boom")
        done.set()

    box = workers.mailbox(handle, lambda: 3600.0)
    box.put("bad")
    box.put("good")
    assert done.wait(5)
    workers.stop()


def test_a_closed_mailbox_takes_no_more_items() -> None:
    workers = DeviceWorkers(threads=1).start()
    got: list[object] = []
    box = workers.mailbox(got.append, lambda: 3600.0)
    box.close()
    box.put("late")
    time.sleep(0.1)
    workers.stop()
    assert got == []
