"""Every artefact of every shard of the default teacher is verified in its interpreter and listed,
with a content hash, in manifest.json; QAT figures sit beside PTQ ones."""

from __future__ import annotations

import hashlib
import json

import pytest
import tensorflow as tf

from export.errors import UnsupportedOnTarget
from export.manifest import build_manifest, write_manifest
from export.pipeline import export_plan, export_shard
from export.plan_file import ShardJob, read_plan
from export.qat import QatConfig
from export.quantize import convert_int8
from export.targets import ExportOptions
from export.teacher_dir import load_teacher_dir

from ..teachers import digits_split
from .helpers import bad_model, write_plan

ALL = ["linux", "edgetpu", "mcu"]


@pytest.fixture(scope="module")
def default_export(default_teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_default")
    plan = read_plan(write_plan(out / "plan.json", default_teacher_dir, {f"p{k}": (k, ALL) for k in range(1, 5)}))
    teacher = load_teacher_dir(plan.teacher_dir)
    results = export_plan(plan, teacher, out, ExportOptions(float16=True))
    write_manifest(out, build_manifest(plan, teacher, results))
    return out, json.loads((out / "manifest.json").read_text())


def test_every_shard_and_target_agrees_with_float(default_export):
    _, manifest = default_export
    pairs = {(a["shard_id"], a["target"], a["kind"]) for a in manifest["artefacts"]}
    expected = ({(f"p{k}", t, "int8") for k in range(1, 5) for t in ALL}
                | {(f"p{k}", "linux", "float16") for k in range(1, 5)})
    assert pairs == expected
    for a in manifest["artefacts"]:
        assert a["top1_agreement"] >= 0.95, a
        assert a["num_examples"] == manifest["holdout_examples"] == 397


def test_sizes_and_hashes_match_the_files(default_export):
    out, manifest = default_export
    for a in manifest["artefacts"]:
        for entry in [{"path": a["file"], "bytes": a["bytes"], "sha256": a["sha256"]}, *a["files"]]:
            data = (out / entry["path"]).read_bytes()
            assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_target_specific_fields(default_export):
    _, manifest = default_export
    for a in manifest["artefacts"]:
        if a["target"] == "linux" and a["kind"] == "int8":
            assert a["per_channel_weights"] is True
            assert (a["input_type"], a["output_type"]) == ("int8", "int8")
        if a["kind"] == "float16":
            assert a["input_type"] == "float32"
        if a["target"] == "edgetpu":
            assert (a["input_type"], a["output_type"]) == ("uint8", "uint8")
            assert a["cpu_fallback_ops"] == [] and a["compile_command"].startswith("edgetpu_compiler -s -o ")
        if a["target"] == "mcu":
            assert 0 < a["arena_bytes"] < a["arena_bytes_with_headroom"]
            assert a["interpreter"] == "tflite-micro"
    for shard in manifest["shards"].values():
        assert shard["ptq"]["top1_agreement"] >= 0.95 and shard["exported"] in ("ptq", "qat")


def test_qat_figures_are_reported_beside_ptq(tiny_teacher, tmp_path):
    result = export_shard(tiny_teacher, ShardJob("p2", 2, ("linux",)), tmp_path, ExportOptions(),
                          qat_mode="always", qat_config=QatConfig(epochs=2))
    q = result.quantisation
    assert q.qat is not None and q.qat_error is None
    assert q.qat.num_examples == q.ptq.num_examples
    assert q.qat.top1_agreement >= 0.9
    assert q.chosen == ("qat" if (q.qat.accuracy, q.qat.top1_agreement) > (q.ptq.accuracy, q.ptq.top1_agreement)
                        else "ptq")
    (art,) = result.artefacts
    assert art.quantisation == q.chosen and art.check.top1_agreement >= 0.9


def test_qat_is_skipped_when_ptq_is_within_one_point(tiny_teacher, tmp_path):
    result = export_shard(tiny_teacher, ShardJob("p2", 2, ("linux",)), tmp_path, ExportOptions(), qat_mode="auto")
    if result.quantisation.ptq.accuracy_drop <= 0.01:
        assert result.quantisation.qat is None and result.quantisation.chosen == "ptq"
    else:
        assert result.quantisation.qat is not None


def test_tf_op_without_builtin_names_layer_op_and_target():
    model = bad_model(tf.keras.layers.Lambda(tf.math.erf, name="erf_layer"))
    x = digits_split()[0][:32]
    with pytest.raises(UnsupportedOnTarget, match=r"linux: layer 'erf_layer' uses operation Erf"):
        convert_int8(model, x, target="linux", batch=None)
