"""Keep the TFLite converter's native chatter off the terminal, but show it when conversion fails."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_native_stderr():
    """Redirect fd 2 to a temp file for the block; replay it to stderr if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace")[-8000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
