"""`python -m simulator.device_group_process`: one group of simulated devices in a process of its own.

The child side of simulator.device_processes. The driver writes frames to this process's stdin and reads
frames from its stdout; each frame is a length-prefixed pickle (a pipe between a driver and the child it
started, never the MQTT wire, which carries safetensors only):
  driver -> child: (HostSettings, [HostedDevice, ...], log level), then ("prepared", seconds), ("wait", seconds)
                   and ("stop",)
  child -> driver: ("started", count), ("prepared", count), ("waited", all finished),
                   ("stopped", {device: DeviceReport})
The devices are a simulator.ray_device_host.DeviceHost: the Ray actor's hosting code, here with the local
engine's worker pool. The end of stdin (the driver closed it, or died) stops the devices and ends the process,
so no child outlives its run. Anything printed goes to stderr (the driver's log of this group), not into the
frames. Imports edge and the host only: no TensorFlow, no cloud/.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import sys
from typing import IO, Any

from edge.mqtt_loop import raise_open_file_limit
from simulator.ray_device_host import DeviceHost

_LENGTH = struct.Struct(">Q")


def write_frame(stream: IO[bytes], message: object) -> None:
    """One message: its pickle's length (8 bytes, big-endian), then the pickle; flushed."""
    blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(blob)))
    stream.write(blob)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next message written by write_frame; EOFError once the stream ends (also mid-frame)."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the stream ended")
    (size,) = _LENGTH.unpack(header)
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError(f"the stream ended {size - len(blob)} bytes into a frame")
    return pickle.loads(blob)  # the driver that started this process wrote it


def serve(commands: IO[bytes], replies: IO[bytes]) -> int:
    """Host the devices the first frame names, answer the driver's frames until ("stop",) or the end of input."""
    settings, devices, log_level = read_frame(commands)
    logging.basicConfig(level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_file_limit(len(devices) + 256)  # one descriptor per session, and the process's own
    host = DeviceHost(settings)
    try:
        write_frame(replies, ("started", host.start(devices)))
        while True:
            try:
                command = read_frame(commands)
            except EOFError:
                logging.getLogger("dmskd.simulator").warning("the driver went away; stopping the devices")
                return 1
            if command[0] == "prepared":
                write_frame(replies, ("prepared", host.wait_prepared(float(command[1]))))
            elif command[0] == "wait":
                write_frame(replies, ("waited", host.wait(float(command[1]))))
            elif command[0] == "stop":
                write_frame(replies, ("stopped", host.stop()))
                return 0
            else:
                raise ValueError(f"unknown command {command[0]!r} from the driver")
    finally:
        host.stop()  # a no-op once the reports went out


def main() -> int:
    """Frames on stdin and stdout; stdout's descriptor then points at stderr, so a stray print cannot break them."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
