"""Keep native chatter (the TFLite converter's log, TFLite-Micro's MicroPrintf) off the terminal:
collect what native code writes to fd 2, and show it when the block fails."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator


class NativeStderr:
    """What native code wrote to fd 2 during the block (`text`, set when the block ends)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def captured_native_stderr(replay_on_error: bool = True) -> Iterator[NativeStderr]:
    """Redirect fd 2 to a temp file for the block and collect it; replay its tail to stderr if the
    block raises (unless replay_on_error is False)."""
    captured = NativeStderr()
    failed = False
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        except BaseException:
            failed = True
            raise
        finally:
            _flush_c_stdio()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
            if failed and replay_on_error:
                sys.stderr.write(captured.text[-8000:])


def _flush_c_stdio() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
