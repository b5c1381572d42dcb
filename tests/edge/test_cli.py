"""The shared CLI convention (edge/cli.py) and `python -m edge` under it: defaults shown, one-line errors, 1 vs 2."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import cli
from edge.__main__ import build_parser, main
from edge.signed_artifact import write_signing_keypair

from ..cli_helpers import assert_every_flag_documented, call, free_port, one_error_line

REPO = Path(__file__).resolve().parents[2]


def test_the_exit_codes_are_the_documented_ones():
    assert (cli.EXIT_OK, cli.EXIT_FAILURE, cli.EXIT_USAGE) == (0, 1, 2)


def test_fail_and_usage_print_one_error_line_to_stderr_and_return_1_and_2(capsys):
    assert cli.fail("model.npz not found; write it first") == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "error: model.npz not found; write it first\n"
    assert cli.usage("--a and --b contradict; pass one") == 2
    assert capsys.readouterr().err == "error: --a and --b contradict; pass one\n"


def test_parser_usage_error_is_one_line_on_stderr_with_exit_2(capsys):
    p = cli.CliParser(prog="python -m tool")
    sub = p.add_subparsers(dest="verb", required=True)
    verb = sub.add_parser("go", help="go")
    verb.add_argument("--n", type=cli.positive_int, default=3, help="how many")
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["go", "--n", "0"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    one_error_line(captured.err, "argument --n: must be at least 1, got 0", "see `python -m tool go --help`")


def test_help_shows_defaults_of_options_with_a_value_not_of_switches_or_required_ones():
    p = cli.CliParser(prog="tool")
    p.add_argument("--n", type=int, default=3, help="how many")
    p.add_argument("--name", required=True, help="who")
    p.add_argument("--fast", action="store_true", help="hurry")
    p.add_argument("--where", help="place (default: here)")
    text = " ".join(p.format_help().split())
    assert "how many (default: 3)" in text
    assert "who (default" not in text and "hurry (default" not in text
    assert text.count("(default:") == 2


@pytest.mark.parametrize("kind, text, message", [
    (cli.positive_int, "0", "must be at least 1"),
    (cli.positive_int, "two", "expected an integer"),
    (cli.positive_float, "-0.5", "must be positive"),
    (cli.positive_float, "nan", "must be positive"),
    (cli.non_negative_float, "-1", "must be >= 0"),
    (cli.probability, "1", "between 0 and 1"),
    (cli.float_between(0, 10), "11", "between 0 and 10"),
    (cli.positive_int_list, "10,x", "comma-separated integers"),
    (cli.positive_int_list, "10,0", "at least 1"),
    (cli.broker_address, "nonsense", "expected 'host:port'"),
], ids=["int-zero", "int-word", "float-negative", "float-nan", "nonneg", "probability", "between", "list-word",
        "list-zero", "broker"])
def test_value_types_reject_bad_values_with_the_rule(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        kind(text)


def test_value_types_accept_good_values():
    assert cli.positive_int("3") == 3 and cli.non_negative_float("0") == 0.0 and cli.probability("1e-5") == 1e-5
    assert cli.positive_int_list("10,100") == [10, 100] and cli.broker_address("mqtt://h:1883") == "mqtt://h:1883"
    assert cli.float_between(0, 10)("0.25") == 0.25


def test_configure_logging_sets_the_dmskd_level_routine_progress_is_info():
    logger = logging.getLogger("dmskd")
    before = logger.level
    try:
        cli.configure_logging()
        assert logging.getLogger("dmskd.aggregator").isEnabledFor(logging.INFO)
        cli.configure_logging("WARNING")
        assert not logging.getLogger("dmskd.aggregator").isEnabledFor(logging.INFO)
    finally:
        logger.setLevel(before)


def test_every_edge_flag_has_help_and_every_verb_shows_defaults(capsys):
    assert_every_flag_documented(build_parser())
    code, out, _ = call(main, ["run", "--help"], capsys)
    assert code == 0 and "(default: 127.0.0.1:1883)" in " ".join(out.split())


@pytest.fixture
def fleet_key(tmp_path) -> list[str]:
    """`--fleet-key FILE` of a freshly written fleet key pair."""
    write_signing_keypair(tmp_path / "fleet-signing.key", tmp_path / "fleet-signing.pub")
    return ["--fleet-key", str(tmp_path / "fleet-signing.pub")]


def test_missing_data_file_exits_1_naming_the_file_and_the_verb_that_writes_it(tmp_path, capsys, fleet_key):
    code, _, err = call(main, ["run", "--device", "d", "--data", str(tmp_path / "nope.npz"), *fleet_key], capsys)
    assert code == 1
    one_error_line(err, "nope.npz not found", "python -m simulator prepare --out DIR", "DIR/devices/<device>.npz")
    assert "python -m cloud prepare" not in err


def test_data_without_images_exits_1_naming_the_array(tmp_path, capsys, fleet_key):
    np.savez(tmp_path / "d.npz", y=np.zeros(3))
    code, _, err = call(main, ["run", "--device", "d", "--data", str(tmp_path / "d.npz"), *fleet_key], capsys)
    assert code == 1
    one_error_line(err, "has no array 'x'")


def test_a_missing_fleet_key_exits_1_naming_the_file_and_the_command_that_writes_it(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    code, _, err = call(main, ["run", "--device", "d", "--data", str(tmp_path / "d.npz"),
                               "--fleet-key", str(tmp_path / "none.pub")], capsys)
    assert code == 1
    one_error_line(err, "none.pub not found", "python -m cloud provision")


def test_no_broker_answering_exits_1_naming_the_broker(tmp_path, capsys, fleet_key):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    port = free_port()
    code, _, err = call(main, ["run", "--device", "d", "--data", str(tmp_path / "d.npz"), *fleet_key,
                               "--broker", f"127.0.0.1:{port}", "--outbox", str(tmp_path / "outbox")], capsys)
    assert code == 1
    one_error_line(err, f"127.0.0.1:{port}", "--broker host:port")


@pytest.mark.parametrize("args, words", [
    (["run", "--device", "d", "--data", "x.npz", "--broker", "nonsense"], "argument --broker: bad broker address"),
    (["run", "--device", "d", "--data", "x.npz", "--fleet-key", "k.pub", "--colour", "red"],
     "unrecognized arguments: --colour red"),
    (["run", "--data", "x.npz"], "the following arguments are required: --device"),
    (["fly"], "invalid choice: 'fly'"),
], ids=["bad-broker", "unknown-flag", "missing-flag", "unknown-verb"])
def test_bad_command_line_exits_2_with_one_line(args, words, capsys):
    code, out, err = call(main, args, capsys)
    assert code == 2 and out == ""
    one_error_line(err, words, "--help")


def test_python_m_edge_help_works_in_a_fresh_interpreter_without_tensorflow():
    code = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = ['edge', 'run', '--help']; "
            "runpy.run_module('edge', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(default: 127.0.0.1:1883)" in " ".join(proc.stdout.split())
