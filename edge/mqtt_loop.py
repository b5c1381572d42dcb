"""One network thread for any number of paho-mqtt clients (issue 11: fleets of 10,000 sessions in one process).

paho's `loop_start()` gives every client a thread of its own, and that thread watches its socket with select(),
which cannot watch a descriptor numbered 1024 or above: a process fails at its ~338th session (each holds a socket
and a socketpair). `MqttLoop` drives any number of clients from ONE thread through paho 2's external-loop API
(`on_socket_open`/`on_socket_close` register a client's socket, `on_socket_register_write`/`..._unregister_write`
say when it has bytes to send; the loop calls `loop_read()`, `loop_write()`, and `loop_misc()` once a second for
keepalives) with `selectors.DefaultSelector`: epoll on Linux, which has no descriptor ceiling. A session costs one
descriptor and no thread.

The contract, for every client on a loop:

- `add(client)` before `client.connect()`; the loop's thread starts with its first client and ends once the last
  one is forgotten (`remove`), so a loop needs no shutdown call.
- Every paho callback (on_connect, on_message, ...) of every client runs on the loop's thread, one at a time:
  handlers must be quick and must never wait for the network (`publish(...).wait_for_publish()`, a CONNACK,
  `MqttSession.publish(wait=True)`): nothing is read or written for any client while one waits.
  `in_loop_thread()` tells code where it runs.
- `connect()` (TCP, TLS handshake) and `reconnect()` are paho's blocking calls, made on the caller's thread and,
  for reconnects, on the loop's: on loopback they take microseconds; a far broker that drops SYNs stalls the loop
  for up to the client's `connect_timeout`. At most RECONNECTS_PER_PASS reconnects run between two rounds of I/O.
- A connection lost without `disconnect()` is reopened with `reconnect()` after `min_delay` s, doubling per failed
  attempt up to `max_delay`, back to `min_delay` after a connection that reached CONNACK: the delays of paho's own
  loop (`reconnect_delay_set`). A client whose `disconnect()` was called is not reopened.
- `remove(client)`: no more reconnects; the client stays served until its socket closes (so a DISCONNECT queued
  just before or after still goes out), then it is forgotten and its callbacks are cleared.

Any thread may publish or subscribe on a client: paho queues the packet and calls `on_socket_register_write`; the
loop notes the client, wakes once for a burst of such calls (a byte on its socketpair) and, at the end of its pass,
calls `loop_write()` for every client noted, which a socket with room takes at once. Only a socket that does not
take everything is watched for writability (epoll_ctl), and `loop_write()` finishes it when it drains. So a
publish or a PUBACK costs its `send` and no epoll_ctl: at 1,000 devices a round two epoll_ctl per message were 8%
of a device process's CPU.

Standard library and paho only (edge/ runs on devices without TensorFlow).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import resource
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import _ConnectionState

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike  # a typing-only Protocol in paho 2.2

log = logging.getLogger("dmskd.mqtt")

TICK_S = 1.0  # loop_misc (keepalive pings, keepalive timeouts) for every client this often
RECONNECTS_PER_PASS = 64  # a reconnect storm after a broker restart still lets I/O run between batches
SPARE_DESCRIPTORS = 256  # beyond one per client: files, the broker's log, TensorFlow's, the aggregator's
SELECT_LIMIT = 1024  # FD_SETSIZE: select(), as paho's own loop uses it, cannot watch a descriptor at or above this
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_CLOSING = (_ConnectionState.MQTT_CS_DISCONNECTING, _ConnectionState.MQTT_CS_DISCONNECTED)


def open_file_limits() -> tuple[int, int]:
    """This process's RLIMIT_NOFILE: (soft, hard)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_open_file_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit if `needed` descriptors do not fit under it; return the soft
    limit in force afterwards (unchanged, with a warning, when the hard limit does not allow it)."""
    soft, hard = open_file_limits()
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(needed, 1 << 16)
    if target <= soft:
        log.warning("%d descriptors needed but the hard open-file limit is %d: raise it (ulimit -Hn, as root) or "
                    "spread the fleet over several processes", needed, hard)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d for %d descriptors", soft, target, needed)
    return target


def descriptor_limit_reason(exc: OSError) -> str:
    """Why a socket could not be opened when the errno is EMFILE or ENFILE, with the limits in force and the fix."""
    if exc.errno == errno.ENFILE:
        return ("the system's file table is full (ENFILE: every process's descriptors count, fs.file-max); "
                "close other programs or raise fs.file-max")
    soft, hard = open_file_limits()
    shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    if soft < hard:
        fix = (f"raise it before starting (`ulimit -n {shown}`), run the sessions on one shared MqttLoop "
               f"(edge/mqtt_loop.py), which raises it itself, or spread the fleet over several processes")
    else:
        fix = ("the hard limit is reached: raise it (as root: `ulimit -Hn`, /etc/security/limits.conf or systemd "
               "LimitNOFILE=, then `ulimit -n`) or spread the fleet over several processes")
    return (f"this process is out of file descriptors (EMFILE: soft limit `ulimit -n` = {soft}, hard limit "
            f"{shown}; each MQTT session holds one socket, three descriptors with a network thread of its own); {fix}")


def is_descriptor_limit(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


class _Member:
    """One client on the loop: its registered socket, the events asked for, its reconnect backoff."""

    __slots__ = ("client", "name", "sock", "events", "min_delay", "max_delay", "delay", "removed", "gone")

    def __init__(self, client: mqtt.Client, name: str, min_delay: float, max_delay: float) -> None:
        self.client, self.name = client, name
        self.sock: SocketLike | None = None
        self.events = 0
        self.min_delay, self.max_delay = min_delay, max_delay
        self.delay: float | None = None  # the last reconnect delay; None: the next one is min_delay
        self.removed = False
        self.gone = threading.Event()  # set once forgotten


class MqttLoop:
    """Serve any number of paho clients on one thread with an epoll selector. See the module docstring."""

    def __init__(self, name: str = "mqtt-loop", tick: float = TICK_S) -> None:
        self.name = name
        self._tick = tick
        self._lock = threading.Lock()
        self._members: dict[mqtt.Client, _Member] = {}
        self._timers: list[tuple[float, int, _Member]] = []  # reconnects due, a heap by time
        self._order = itertools.count()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._descriptor_budget = 0
        self.reconnect_attempts = 0
        self._to_flush: dict[_Member, SocketLike] = {}  # clients with packets queued since the last flush
        self._selecting = False  # the loop's thread waits in select(): a packet queued now needs a wake-up
        self._woken = False  # a wake-up byte is on its way: later packets ride on it

    def __len__(self) -> int:
        return len(self._members)

    @property
    def running(self) -> bool:
        """Whether the loop's thread is alive (it ends once the last client is forgotten)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def in_loop_thread(self) -> bool:
        """True on the loop's thread: where every callback of every client runs, and nothing may wait."""
        return self._thread_id == threading.get_ident()

    def add(self, client: mqtt.Client, *, name: str = "", min_delay: float = 1.0, max_delay: float = 4.0) -> None:
        """Serve `client` from now on; call before its `connect()`. Raises the soft descriptor limit if the fleet
        needs it; OSError (EMFILE) if the loop's own selector cannot be opened."""
        with self._lock:
            member = self._members.get(client)
            if member is not None:
                if member.removed:
                    raise ValueError(f"{member.name or client}: still closing on this loop; wait for remove()")
                return
            needed = len(self._members) + 1 + SPARE_DESCRIPTORS
            if needed > self._descriptor_budget:
                soft = raise_open_file_limit(needed)
                self._descriptor_budget = soft if soft >= needed else needed + 1024  # retry (and warn) rarely
            if self._thread is None:
                self._start_locked()
            member = _Member(client, name, min_delay, max_delay)
            self._members[client] = member
        client.on_socket_open = lambda c, u, sock: self._opened(member, sock)
        client.on_socket_close = lambda c, u, sock: self._closed(member, sock)
        client.on_socket_register_write = lambda c, u, sock: self._set_write(member, sock, True)
        client.on_socket_unregister_write = lambda c, u, sock: self._set_write(member, sock, None)

    def remove(self, client: mqtt.Client) -> threading.Event:
        """Stop reconnecting `client`; it is forgotten once its socket closes (at once if it has none). Returns the
        event set then. Disconnect it after this call to close the socket cleanly."""
        with self._lock:
            member = self._members.get(client)
            if member is None:
                done = threading.Event()
                done.set()
                return done
            member.removed = True
            if member.sock is None:
                self._forget_locked(member)
        self._wake()
        return member.gone

    def forget(self, client: mqtt.Client) -> None:
        """Drop `client` now, closing its socket if it still has one (a disconnect that never completed)."""
        with self._lock:
            member = self._members.get(client)
            if member is None:
                return
            member.removed = True
            sock = member.sock
            self._unregister_locked(member)
            self._forget_locked(member)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._wake()

    # -- paho's socket callbacks (any thread) -----------------------------------------------------------------------
    def _opened(self, member: _Member, sock: SocketLike) -> None:
        with self._lock:
            if self._selector is None or member.gone.is_set():
                return
            self._unregister_locked(member)
            with contextlib.suppress(KeyError, ValueError):  # a stale entry for a reused descriptor number
                self._selector.unregister(sock.fileno())
            self._selector.register(sock, _READ, member)
            member.sock, member.events = sock, _READ
        with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a unix one, a websocket wrapper)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]

    def _closed(self, member: _Member, sock: SocketLike) -> None:
        client = member.client
        with self._lock:
            if member.sock is not sock:
                return
            self._unregister_locked(member)
            if member.removed:
                self._forget_locked(member)
            elif client._state not in _CLOSING:  # lost, not disconnect()ed: reopen it after the backoff delay
                if client.is_connected():  # still CONNECTED while paho closes: this connection had a CONNACK
                    member.delay = None
                self._schedule_locked(member)
        self._wake()

    def _set_write(self, member: _Member, sock: SocketLike, want: bool | None) -> None:
        """paho queued a packet (want=True, from any thread: always, so the next loop_write's epilogue resets
        paho's own flag): write it on the loop's next pass, without an epoll round trip; or (want=None, after a
        loop_write) watch for writability only while paho still has bytes the socket did not take."""
        wake = False
        with self._lock:
            if member.sock is not sock or self._selector is None:
                return
            if want is None:
                self._watch_write_locked(member, sock, member.client.want_write())
            elif not member.events & _WRITE:  # a full socket is watched already; its writability will flush it
                self._to_flush[member] = sock
                wake = self._selecting and not self._woken  # a busy loop flushes at the end of its pass anyway
                self._woken = self._woken or wake
        if wake:
            self._wake()  # at most one wake-up per wait: the loop flushes every client queued meanwhile

    def _watch_write_locked(self, member: _Member, sock: SocketLike, write: bool) -> None:
        events = _READ | _WRITE if write else _READ
        if events != member.events and self._selector is not None:
            self._selector.modify(sock, events, member)
            member.events = events

    def _flush_writes(self) -> None:
        """Write what every client queued since the last pass (publishes, PUBACKs); a socket that does not take it
        all is watched for writability and finished by _serve."""
        with self._lock:
            pending, self._to_flush = self._to_flush, {}
        for member, sock in pending.items():
            client = member.client
            if member.sock is not sock or client.socket() is not sock:
                continue
            try:
                client.loop_write()
            except Exception:
                log.exception("%s: error in the shared MQTT loop", member.name or client)
            if client.want_write():
                with self._lock:
                    if member.sock is sock:
                        self._watch_write_locked(member, sock, True)

    # -- the loop's thread ------------------------------------------------------------------------------------------
    def _start_locked(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            wake_r, wake_w = socket.socketpair()
        except OSError:
            selector.close()
            raise
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        selector.register(wake_r, _READ, None)
        self._selector, self._wake_r, self._wake_w = selector, wake_r, wake_w
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._thread_id = threading.get_ident()
        next_tick = time.monotonic() + self._tick
        while True:
            with self._lock:
                selector = self._selector
                if not self._members or selector is None:
                    self._shut_down_locked()
                    return
                due = self._timers[0][0] if self._timers else next_tick
                self._selecting = not self._to_flush  # else: something was queued after this pass's flush
            timeout = max(0.0, min(due, next_tick) - time.monotonic()) if self._selecting else 0.0
            ready = selector.select(timeout)
            with self._lock:
                self._selecting = self._woken = False
            for key, mask in ready:
                if key.data is None:
                    self._drain_wake()
                else:
                    self._serve(key.data, key.fileobj, mask)  # type: ignore[arg-type]
            now = time.monotonic()
            self._reconnect_due(now)
            if now >= next_tick:
                self._tick_all()
                next_tick = now + self._tick
            self._flush_writes()  # last: whatever this pass queued (a PUBACK for a message just read) goes now

    def _serve(self, member: _Member, sock: SocketLike, mask: int) -> None:
        client = member.client
        try:
            if mask & _READ:
                client.loop_read()
                for _ in range(1000):  # TLS: bytes already decrypted wait in the SSL object, unseen by epoll
                    pending = getattr(client.socket(), "pending", None)
                    if client.socket() is not sock or pending is None or pending() <= 0:
                        break
                    client.loop_read()
            if mask & _WRITE and client.socket() is sock:
                client.loop_write()
                self._set_write(member, sock, None)
        except Exception:  # one client's failure (a callback bug paho re-raises) must not stop the others
            log.exception("%s: error in the shared MQTT loop", member.name or client)

    def _tick_all(self) -> None:
        with self._lock:
            members = [m for m in self._members.values() if m.sock is not None]
        for member in members:
            sock = member.sock
            try:
                member.client.loop_misc()
            except Exception:
                log.exception("%s: loop_misc failed", member.name or member.client)
            # a write registration lost in a publish/loop_write race costs at most one tick
            if sock is not None and not member.events & _WRITE and member.client.want_write():
                self._set_write(member, sock, True)

    def _schedule_locked(self, member: _Member) -> None:
        member.delay = member.min_delay if member.delay is None else min(member.delay * 2, member.max_delay)
        heapq.heappush(self._timers, (time.monotonic() + member.delay, next(self._order), member))

    def _reconnect_due(self, now: float) -> None:
        for _ in range(RECONNECTS_PER_PASS):
            with self._lock:
                if not self._timers or self._timers[0][0] > now:
                    return
                member = heapq.heappop(self._timers)[2]
                client = member.client
                if member.removed or member.gone.is_set() or client.socket() is not None or client._state in _CLOSING:
                    continue
            self.reconnect_attempts += 1
            try:
                client.reconnect()
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS, out of descriptors: retry later
                limit = isinstance(exc, OSError) and is_descriptor_limit(exc)
                reason = descriptor_limit_reason(exc) if isinstance(exc, OSError) and limit else str(exc)
                log.debug("%s: reconnect failed: %s", member.name or client, reason)
                on_fail = client.on_connect_fail
                if on_fail is not None:
                    with contextlib.suppress(Exception):
                        on_fail(client, client.user_data_get())
                with self._lock:
                    if not member.removed and client.socket() is None:
                        self._schedule_locked(member)
            except Exception:
                log.exception("%s: reconnect failed", member.name or client)

    # -- helpers (the _locked ones hold self._lock) -------------------------------------------------------------
    def _unregister_locked(self, member: _Member) -> None:
        if member.sock is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(member.sock)
        member.sock, member.events = None, 0
        self._to_flush.pop(member, None)

    def _forget_locked(self, member: _Member) -> None:
        if self._members.get(member.client) is member:
            del self._members[member.client]
        client = member.client
        client.on_socket_open = client.on_socket_close = None
        client.on_socket_register_write = client.on_socket_unregister_write = None
        member.gone.set()

    def _shut_down_locked(self) -> None:
        for closable in (self._selector, self._wake_r, self._wake_w):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._selector = self._wake_r = self._wake_w = None
        self._timers.clear()
        self._thread = None
        self._thread_id = None

    def _wake(self) -> None:
        wake_w = self._wake_w
        if wake_w is not None and not self.in_loop_thread():
            with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or just closed
                wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        wake_r = self._wake_r
        if wake_r is not None:
            with contextlib.suppress(OSError):
                wake_r.recv(4096)
