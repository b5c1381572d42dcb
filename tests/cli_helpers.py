"""One harness for the CLI convention of edge/cli.py, shared by every package's CLI tests."""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Callable

import pytest


def call(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run a package's main(argv) in-process: (exit code, stdout, stderr); argparse's SystemExit counts too."""
    dmskd = logging.getLogger("dmskd")
    level = dmskd.level
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        dmskd.setLevel(level)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str, *words: str) -> str:
    """The single `error: ...` line of stderr (nothing else printed), holding every word; no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The verb parsers of a CLI ({"": parser} when it has no verbs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {"": parser}


def assert_every_flag_documented(parser: argparse.ArgumentParser) -> None:
    """Every option of every verb has help text; one that takes a value shows a default or says what it is."""
    for name, verb in verbs(parser).items():
        help_text = verb.format_help()
        assert "(default:" in help_text, name
        for action in verb._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"{name} {'/'.join(action.option_strings)}"
            assert action.help and action.help != argparse.SUPPRESS, f"{flag} has no help text"
            if action.option_strings and action.nargs != 0 and not action.required:
                assert action.default is not None or "(default:" in action.help, f"{flag}: say what the default is"


def free_port() -> int:
    """A loopback TCP port nobody listens on (for 'no broker answers')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
