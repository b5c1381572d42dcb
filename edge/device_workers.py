"""A few threads that run the work of many device agents: each agent's items in order, one at a time.

A real device runs its `DeviceAgent` on a thread of its own. A simulator hosting thousands of devices
in one process cannot give each a thread (10,000 threads contend for one interpreter lock, and each
would wait on its own timer); it passes one `DeviceWorkers` to all its agents instead. The agents'
handlers are the same; only who runs them differs. Every agent has a `Mailbox`: items are handled
in the order they were put, never two of one agent at once, and an agent silent for its idle
interval gets an "idle" item, as a device thread's queue timeout would give it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("dmskd.edge")

IDLE = "idle"
BATCH = 16  # items of one agent handled before the next agent's turn


class Mailbox:
    """One agent's queue of work items; `put` is safe from any thread (MQTT callbacks, timers)."""

    def __init__(self, workers: DeviceWorkers, handle: Callable[[object], None],
                 idle_after: Callable[[], float]) -> None:
        self._workers, self._handle, self._idle_after = workers, handle, idle_after
        self._items: deque[object] = deque()
        self._scheduled = False
        self.closed = False
        self.last_put = time.monotonic()

    def put(self, item: object) -> None:
        with self._workers.lock:
            if self.closed:
                return
            self._items.append(item)
            self.last_put = time.monotonic()
            if self._scheduled:
                return
            self._scheduled = True
        self._workers.ready.put(self)

    def close(self) -> None:
        """No further items are taken; what is queued is dropped."""
        with self._workers.lock:
            self.closed = True
            self._items.clear()

    def idle_due(self, now: float) -> bool:
        return not self.closed and not self._scheduled and now - self.last_put >= self._idle_after()

    def _run_batch(self) -> None:
        for _ in range(BATCH):
            with self._workers.lock:
                if not self._items:
                    self._scheduled = False
                    return
                item = self._items.popleft()
            try:
                self._handle(item)
            except Exception:  # one agent's failure must not take a worker thread (and its other agents) down
                log.exception("device work item %r failed", item)
        with self._workers.lock:
            if not self._items:
                self._scheduled = False
                return
        self._workers.ready.put(self)  # more to do: back of the line, so no agent starves the others


class DeviceWorkers:
    """`threads` workers shared by every agent that was given this pool; start() before the agents, stop() after."""

    def __init__(self, threads: int = 2, name: str = "device-workers", tick_s: float = 1.0) -> None:
        if threads < 1:
            raise ValueError(f"a worker pool needs at least one thread, got {threads}")
        self.lock = threading.Lock()
        self.ready: queue.SimpleQueue[Mailbox | None] = queue.SimpleQueue()
        self._mailboxes: list[Mailbox] = []
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        self._ticker = threading.Thread(target=self._tick, name=f"{name}-idle", daemon=True)
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._started = False

    def mailbox(self, handle: Callable[[object], None], idle_after: Callable[[], float]) -> Mailbox:
        """A new agent's mailbox: `handle` runs its items; after `idle_after()` seconds without one, IDLE."""
        box = Mailbox(self, handle, idle_after)
        with self.lock:
            self._mailboxes.append(box)
        return box

    def start(self) -> DeviceWorkers:
        if not self._started:
            self._started = True
            for t in (*self._threads, self._ticker):
                t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self.ready.put(None)
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=10)

    def _work(self) -> None:
        while (box := self.ready.get()) is not None:
            box._run_batch()

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_s):
            now = time.monotonic()
            with self.lock:
                due = [b for b in self._mailboxes if b.idle_due(now)]
            for box in due:
                box.put(IDLE)
