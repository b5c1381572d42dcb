"""`python -m export` end to end in a subprocess, and its one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from cloud.teacher_store import TeacherBundle, save_teacher_bundle

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


@pytest.mark.parametrize("case", ["missing_plan", "bad_json", "bad_target", "missing_teacher", "bad_flag", "too_deep"])
def test_bad_input_gets_one_line_and_exit_2(case, tiny_teacher_dir, tmp_path):
    plan = tmp_path / "plan.json"
    args = ["--plan", str(plan), "--out", str(tmp_path / "out")]
    if case == "bad_json":
        plan.write_text('{"teacher_dir": "x",\n "shards": {')
    elif case == "bad_target":
        write_plan(plan, tiny_teacher_dir, {"p1": (1, ["fpga"])})
    elif case == "missing_teacher":
        write_plan(plan, tmp_path / "nowhere", {"p1": (1, ["linux"])})
    elif case == "bad_flag":
        args.append("--qat=sometimes")
    elif case == "too_deep":
        write_plan(plan, tiny_teacher_dir, {"p5": (5, ["linux"])})
    proc = run_export(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    expected = {"missing_plan": "python -m cloud plan", "bad_json": "line 2", "bad_target": "unknown target 'fpga'",
                "missing_teacher": "python -m simulator teacher", "bad_flag": "--qat",
                "too_deep": "has 2 exits; re-plan"}[case]
    assert expected in lines[0]


def test_layer_the_target_cannot_run_exits_1_naming_layer_op_target(tmp_path):
    x, y, hx, hy = digits_split()
    model = bad_model(tf.keras.layers.LeakyReLU(0.1, name="leaky"))
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    teacher_dir = save_teacher_bundle(tmp_path / "teacher", TeacherBundle(model, [0.0], x[:200], hx[:50], hy[:50]))
    plan = write_plan(tmp_path / "plan.json", teacher_dir, {"p1": (1, ["edgetpu"])})
    proc = run_export("--plan", str(plan), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "edgetpu: layer 'leaky' uses operation LEAKY_RELU" in proc.stderr
    ok = run_export("--plan", str(plan), "--out", str(tmp_path / "out"), "--quiet", "--allow-cpu-fallback")
    assert ok.returncode == 0, ok.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["artefacts"][0]["cpu_fallback_ops"][0]["layer"] == "leaky"
