"""`python -m export` end to end in a subprocess (the one), and in-process: its one-line errors, exit code 2 for
bad flags and 1 for a missing or malformed plan or teacher or a layer a target cannot run (edge/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from export.__main__ import build_parser, main
from export.teacher_dir import TeacherBundle, save_teacher_dir

from ..cli_helpers import assert_every_flag_documented, call, one_error_line
from ..teachers import digits_split
from .helpers import bad_model, write_plan

REPO = Path(__file__).resolve().parents[2]


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_cli_exports_a_small_plan(tiny_teacher_dir, tmp_path):
    plan = write_plan(tmp_path / "plan.json", tiny_teacher_dir, {"p1": (1, ["mcu"]), "p2": (2, ["linux", "edgetpu"])})
    out = tmp_path / "out"
    proc = run_export("--plan", str(plan), "--out", str(out), "--float16", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    got = sorted((a["shard_id"], a["target"], a["kind"]) for a in manifest["artefacts"])
    assert got == [("p1", "mcu", "int8"), ("p2", "edgetpu", "int8"), ("p2", "linux", "float16"),
                   ("p2", "linux", "int8")]
    for a in manifest["artefacts"]:
        assert (out / a["file"]).stat().st_size == a["bytes"]
        assert a["top1_agreement"] >= 0.9
    assert (out / "mcu" / "shard_p1_model_data.cc").exists() and (out / "mcu" / "shard_p1_op_resolver.h").exists()
    assert "p2" in proc.stdout and "edgetpu" in proc.stdout


def test_every_flag_has_help_and_help_shows_defaults(capsys):
    assert_every_flag_documented(build_parser())
    code, out, _ = call(main, ["--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "(default: 5)" in text and "(default: 0.25)" in text and "(default: auto)" in text


@pytest.mark.parametrize("flags, words", [
    (["--qat=sometimes"], "argument --qat: invalid choice: 'sometimes'"),
    (["--qat-epochs", "0"], "argument --qat-epochs: must be at least 1"),
    (["--arena-headroom", "11"], "argument --arena-headroom: must be between 0 and 10"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
], ids=["bad-qat", "zero-qat-epochs", "headroom-out-of-range", "unknown-flag"])
def test_bad_flag_gets_one_line_and_exit_2(flags, words, tmp_path, capsys):
    code, out, err = call(main, ["--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "out"), *flags],
                          capsys)
    assert code == 2 and out == ""
    one_error_line(err, words, "see `python -m export --help`")


def test_missing_required_flag_exits_2(capsys):
    code, _, err = call(main, ["--plan", "plan.json"], capsys)
    assert code == 2
    one_error_line(err, "the following arguments are required: --out")


@pytest.mark.parametrize("case", ["missing_plan", "bad_json", "bad_target", "missing_teacher", "too_deep",
                                  "out_is_a_file"])
def test_missing_or_malformed_input_gets_one_line_and_exit_1(case, tiny_teacher_dir, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    out = tmp_path / "out"
    if case == "bad_json":
        plan.write_text('{"teacher_dir": "x",\n "shards": {')
    elif case == "bad_target":
        write_plan(plan, tiny_teacher_dir, {"p1": (1, ["fpga"])})
    elif case == "missing_teacher":
        write_plan(plan, tmp_path / "nowhere", {"p1": (1, ["linux"])})
    elif case == "too_deep":
        write_plan(plan, tiny_teacher_dir, {"p5": (5, ["linux"])})
    elif case == "out_is_a_file":
        out.write_text("")
    code, _, err = call(main, ["--plan", str(plan), "--out", str(out), "--quiet"], capsys)
    assert code == 1, err
    expected = {"missing_plan": ("plan.json not found", "python -m cloud plan"), "bad_json": ("line 2",),
                "bad_target": ("unknown target 'fpga'",),
                "missing_teacher": ("nowhere", "python -m simulator teacher"),
                "too_deep": ("has 2 exits; re-plan",), "out_is_a_file": ("is a file; pass a directory",)}[case]
    one_error_line(err, *expected)


def test_layer_the_target_cannot_run_exits_1_naming_layer_op_target(tmp_path, capsys):
    x, y, hx, hy = digits_split()
    model = bad_model(tf.keras.layers.LeakyReLU(0.1, name="leaky"))
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    teacher_dir = save_teacher_dir(tmp_path / "teacher", TeacherBundle(model, [0.0], x[:200], hx[:50], hy[:50]))
    plan = write_plan(tmp_path / "plan.json", teacher_dir, {"p1": (1, ["edgetpu"])})
    code, _, err = call(main, ["--plan", str(plan), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 1, err[-2000:]
    one_error_line(err, "edgetpu: layer 'leaky' uses operation LEAKY_RELU")
    code, _, err = call(main, ["--plan", str(plan), "--out", str(tmp_path / "out"), "--quiet",
                               "--allow-cpu-fallback"], capsys)
    assert code == 0, err[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["artefacts"][0]["cpu_fallback_ops"][0]["layer"] == "leaky"
