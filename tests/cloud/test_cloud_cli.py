"""`python -m cloud` end to end (one subprocess: plan.json from the example fleet file), and in-process: its
verbs under the edge/cli.py convention (defaults in --help, one-line errors, exit 1 failure / 2 usage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.__main__ import build_parser, main

from ..cli_helpers import assert_every_flag_documented, call, one_error_line

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "examples" / "fleet.toml"
PLAN_KEYS = {"teacher_dir", "lambda", "solver", "shards", "devices"}
SHARD_KEYS = {"k", "targets", "flops_per_sample", "int8_bytes_estimate", "arena_bytes_estimate", "expected_accuracy"}
DEVICE_KEYS = {"device_id", "shard_id", "k", "target", "flops_per_epoch", "model_bytes", "arena_bytes",
               "expected_accuracy"}


def cloud(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "cloud", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.fixture(scope="module")
def planned(default_teacher_dir: Path, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("plan") / "sub" / "plan.json"
    run = cloud("plan", "--fleet", str(FLEET), "--teacher", str(default_teacher_dir), "--out", str(out))
    assert run.returncode == 0, run.stderr
    return run, json.loads(out.read_text())


def test_plan_json_has_the_schema_the_exporter_reads(planned, default_teacher_dir: Path) -> None:
    _, plan = planned
    assert set(plan) >= PLAN_KEYS
    assert plan["teacher_dir"] == str(default_teacher_dir.resolve())
    assert plan["lambda"] == 0.05 and plan["solver"] == "exact"
    assert plan["shards"] and all(set(s) >= SHARD_KEYS for s in plan["shards"].values())
    for sid, s in plan["shards"].items():
        assert sid == f"p{s['k']}" and s["targets"] and set(s["targets"]) <= {"linux", "edgetpu", "mcu"}
        assert isinstance(s["flops_per_sample"], int) and s["arena_bytes_estimate"] > 0
    assert len(plan["devices"]) == 278
    for d in plan["devices"]:
        assert set(d) >= DEVICE_KEYS
        shard = plan["shards"][d["shard_id"]]
        assert d["k"] == shard["k"] and d["target"] in shard["targets"]
        assert d["flops_per_epoch"] <= d["flops_budget"]
        assert d["arena_limit"] is None or d["arena_bytes"] <= d["arena_limit"]
        assert d["flash_limit"] is None or d["model_bytes"] <= d["flash_limit"]


def test_plan_json_is_what_the_exporter_accepts(planned, tmp_path: Path) -> None:
    from export.plan_file import read_plan

    _, plan = planned
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    jobs = read_plan(path).jobs
    assert {j.shard_id for j in jobs} == set(plan["shards"])


def test_the_table_groups_devices_by_class_and_shows_the_columns(planned) -> None:
    run, plan = planned
    text = run.stdout
    for header in ("device", "shard", "FLOPs/epoch", "arena B", "model B", "exp. acc"):
        assert header in text
    assert "meter-000..meter-199" in text and "gw-lab" in text and "coral-000..coral-009" in text
    assert "278 devices on" in text and "wrote " in text
    assert len(text.splitlines()) < 40  # a summary, not 278 rows


def test_greedy_solver_and_per_device_table(default_teacher_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "greedy.json"
    code, stdout, err = call(main, ["plan", "--fleet", str(REPO / "examples" / "fleet.yaml"), "--teacher",
                                    str(default_teacher_dir), "--solver", "greedy", "--lambda", "0", "--per-device",
                                    "--out", str(out)], capsys)
    assert code == 0, err
    plan = json.loads(out.read_text())
    assert plan["solver"] == "greedy" and plan["lambda"] == 0.0
    assert "meter-199" in stdout and "meter-bench" in stdout


def test_every_cloud_flag_has_help_and_every_verb_shows_defaults(capsys) -> None:
    assert_every_flag_documented(build_parser())
    for verb, default in (("plan", "(default: 0.05)"), ("profile", "(default: INFO)"),
                          ("aggregate", "(default: 127.0.0.1:1883)")):
        code, out, _ = call(main, [verb, "--help"], capsys)
        assert code == 0 and default in " ".join(out.split()), verb


@pytest.mark.parametrize("args, words", [
    (["plan", "--fleet", "{fleet}", "--teacher", "{teacher}", "--solver", "fast"], "invalid choice: 'fast'"),
    (["plan", "--fleet", "{fleet}", "--teacher", "{teacher}", "--lambda", "-1"], "--lambda: must be >= 0"),
    (["plan", "--fleet", "{fleet}", "--teacher", "{teacher}", "--max-shards", "0"], "--max-shards: must be at least 1"),
    (["plan", "--teacher", "{teacher}"], "the following arguments are required: --fleet"),
    (["plan", "--fleet", "{fleet}", "--teacher", "{teacher}", "--colour", "red"], "unrecognized arguments"),
    (["aggregate", "--bundle", "b", "--broker", "nonsense"], "argument --broker: bad broker address"),
    (["profile"], "the following arguments are required: --teacher"),
], ids=["bad-solver", "negative-lambda", "zero-cap", "no-fleet-flag", "unknown-flag", "bad-broker", "no-teacher-flag"])
def test_bad_command_line_is_one_line_naming_the_fix_with_exit_code_2(args, words, default_teacher_dir: Path,
                                                                      capsys) -> None:
    subs = {"{teacher}": str(default_teacher_dir), "{fleet}": str(FLEET)}
    code, out, err = call(main, [subs.get(a, a) for a in args], capsys)
    assert code == 2 and out == "", err
    one_error_line(err, words, "--help")


@pytest.mark.parametrize("args, words", [
    (["plan", "--fleet", "{tmp}/missing.toml", "--teacher", "{teacher}"], "missing.toml: no such file; pass the path"),
    (["plan", "--fleet", "{fleet}", "--teacher", "{tmp}/teacher"], "python -m simulator teacher --out"),
    (["plan", "--fleet", "{tmp}/bad.toml", "--teacher", "{teacher}"], "bad.toml:3: device 'x' field 'target'"),
    (["plan", "--fleet", "{fleet}", "--teacher", "{teacher}", "--out", "{tmp}"], "is a directory; pass a file path"),
    (["profile", "--teacher", "{tmp}/teacher"], "python -m simulator teacher --out"),
    (["aggregate", "--bundle", "{tmp}/bundle", "--checkpoint", "{tmp}/ckpt"],
     "bundle/bundle.json missing; create a bundle with `python -m simulator prepare --out DIR`"),
], ids=["missing-fleet", "missing-teacher", "malformed-fleet", "out-is-a-directory", "profile-missing-teacher",
        "missing-bundle"])
def test_missing_or_bad_input_file_is_one_line_naming_it_with_exit_code_1(args, words, default_teacher_dir: Path,
                                                                          tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.toml").write_text('[[device]]\nid = "x"\ntarget = "gpu"\nsamples = 1\nflops_per_epoch = 1\n')
    subs = {"{teacher}": str(default_teacher_dir), "{fleet}": str(FLEET)}
    code, _, err = call(main, [subs.get(a, a.replace("{tmp}", str(tmp_path))) for a in args], capsys)
    assert code == 1, err
    one_error_line(err, words)


def test_a_fleet_nothing_fits_exits_1_naming_the_device_and_the_limit_to_raise(default_teacher_dir: Path,
                                                                               tmp_path: Path, capsys) -> None:
    fleet = tmp_path / "tiny.toml"
    fleet.write_text('[[class]]\nname = "m"\ncount = 2\ntarget = "mcu"\nsamples = 100\n'
                     'flops_per_sample = "10 kFLOP"\narena_kb = 1\nflash_kb = 64\n')
    code, _, err = call(main, ["plan", "--fleet", str(fleet), "--teacher", str(default_teacher_dir),
                               "--out", str(tmp_path / "p.json")], capsys)
    assert code == 1
    assert "device m-000" in err and "tiny.toml:1" in err
    assert "the cheapest shard it could run, p1" in err
    assert "flops_per_epoch >= 2,279,400" in err and "arena_kb >=" in err
    assert not (tmp_path / "p.json").exists()
