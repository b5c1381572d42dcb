"""Every error a user can cause at `python -m cloud|edge|export|simulator` is one line on stderr, `error: <what is
wrong>; <the fix>`, with no traceback and exit code 1 (a failed run: a file, the broker or the data had to be
consulted) or 2 (the command line alone is wrong), as edge/cli.py says.

One table of named cases: the command, the files to lay down (over a small valid kit: a fleet bundle, its
signing key pair, a device's data, a fleet file, a damaged teacher directory, a plan), the exit code and the
words the error line must hold. Every case runs as a real `python -m ...` subprocess; the module fixture starts
them all at once on a thread pool, so the table costs seconds of wall time, not one interpreter start per case.
Almost every case fails before TensorFlow loads; the few that must read a data set load it once each.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The module fixture runs every case (about 140 Python processes, two at a time) before the first test: on a
# loaded 2-core machine that passes the default 300 s per test (seen: 142 setup errors at load 6), so this
# module gets its own budget.
pytestmark = pytest.mark.timeout(1200)
DIR = object()  # a file entry that makes a directory (replacing any file there)
REMOVE = object()  # a file entry that deletes what the kit holds there
Content = str | bytes | object | Callable[[Path], None]
TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(24)  # the flatbuffer identifier a .tflite carries; enough for a bundle


@dataclass(frozen=True)
class Case:
    """argv after `python -m`; {d} is the case's directory (the kit plus `files`), {port} a closed port."""

    name: str
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)


def edit_json(change: Callable[[Any], object]) -> Callable[[Path], None]:
    """A file entry that rewrites the kit's JSON file after `change(doc)` has edited the document in place."""

    def write(path: Path) -> None:
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return write


def npz(**arrays: Any) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def truncate(size: int) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(path.read_bytes()[:size])


def copy_of(name: str) -> Callable[[Path], None]:
    return lambda path: shutil.copyfile(path.parent / name, path)


def pop(key: str) -> Callable[[Any], object]:
    return lambda doc: doc.pop(key)


def set_key(key: str, value: Any) -> Callable[[Any], None]:
    return lambda doc: doc.__setitem__(key, value)


def set_in_plan(index: int, key: str, value: Any) -> Callable[[Any], None]:
    return lambda doc: doc[index].__setitem__(key, value)


IMAGES = np.zeros((4, 8, 8, 1), np.float32)
AGG = ("cloud", "aggregate", "--bundle", "{d}/bundle", "--checkpoint", "{d}/ckpt", "--broker", "127.0.0.1:{port}")
EDGE = ("edge", "run", "--device", "d0", "--data", "{d}/devices/d0.npz", "--fleet-key", "{d}/fleet-signing.pub",
        "--outbox", "{d}/outbox", "--broker", "127.0.0.1:{port}")
PLAN = ("cloud", "plan", "--fleet", "{d}/fleet.toml", "--teacher", "{d}/teacher", "--out", "{d}/plan-out.json")
EXPORT = ("export", "--plan", "{d}/plan.json", "--out", "{d}/exported", "--quiet")
PREPARE = ("simulator", "prepare", "--out", "{d}/prepared")
RUN = ("simulator", "run", "--run-dir", "{d}/run")
WORKER = ("cloud", "aggregate-worker", "--bundle", "{d}/bundle", "--broker", "127.0.0.1:{port}", "--id")
REBUNDLE = "python -m simulator prepare --out DIR"

CASES = [
    # python -m cloud aggregate: the bundle, its settings and plans, programs, weights, keys, checkpoint, broker
    Case("aggregate-bundle-missing", (*AGG[:3], "{d}/nowhere", *AGG[4:]), 1,
         ("nowhere/bundle.json missing", REBUNDLE)),
    Case("aggregate-bundle-is-a-file", (*AGG[:3], "{d}/fleet.toml", *AGG[4:]), 1,
         ("fleet.toml is a file; pass the bundle directory",)),
    Case("aggregate-settings-missing-key", AGG, 1, ("bundle.json: missing fields ['fleet']", REBUNDLE),
         {"bundle/bundle.json": edit_json(pop("fleet"))}),
    Case("aggregate-settings-unknown-key", AGG, 1, ("bundle.json: unknown fields ['colour']",),
         {"bundle/bundle.json": edit_json(set_key("colour", "red"))}),
    Case("aggregate-settings-wrong-type", AGG, 1, ("field 'rounds' must be an integer, got 'ten'",),
         {"bundle/bundle.json": edit_json(set_key("rounds", "ten"))}),
    Case("aggregate-settings-zero-rounds", AGG, 1, ("field 'rounds' must be at least 1, got 0",),
         {"bundle/bundle.json": edit_json(set_key("rounds", 0))}),
    Case("aggregate-settings-nan-clip", AGG, 1, ("field 'clip' must be a finite number, got nan",),
         {"bundle/bundle.json": edit_json(set_key("clip", float("nan")))}),
    Case("aggregate-settings-unknown-dp-mode", AGG, 1, ("field 'dp_mode' must be one of none, local, central",),
         {"bundle/bundle.json": edit_json(set_key("dp_mode", "sometimes"))}),
    Case("aggregate-settings-tiny-chunk-limit", AGG, 1, ("field 'chunk_limit' must be at least 1024 bytes, got 100",),
         {"bundle/bundle.json": edit_json(set_key("chunk_limit", 100))}),
    Case("aggregate-settings-not-an-object", AGG, 1, ("bundle.json: expected a JSON object of round settings",),
         {"bundle/bundle.json": "[]"}),
    Case("aggregate-settings-truncated", AGG, 1, ("bundle.json line", "not valid JSON", REBUNDLE),
         {"bundle/bundle.json": truncate(30)}),
    Case("aggregate-settings-empty", AGG, 1, ("bundle.json line 1: not valid JSON",), {"bundle/bundle.json": ""}),
    Case("aggregate-settings-is-a-directory", AGG, 1, ("bundle.json is a directory, not a JSON file",),
         {"bundle/bundle.json": DIR}),
    Case("aggregate-plans-empty", AGG, 1, ("plans.json: expected a non-empty JSON list of device plans",),
         {"bundle/plans.json": "[]"}),
    Case("aggregate-plan-missing-field", AGG, 1, ("plans.json: plan #2", "is missing fields ['shard_hash']"),
         {"bundle/plans.json": edit_json(lambda doc: doc[1].pop("shard_hash"))}),
    Case("aggregate-plan-negative-lr", AGG, 1, ("plan #1", "lr must be a positive number"),
         {"bundle/plans.json": edit_json(lambda doc: doc[0]["training"].__setitem__("lr", -1))}),
    Case("aggregate-plan-other-fleet", AGG, 1, ("plan #2 (d1): fleet 'other' differs from bundle.json's 'demo'",),
         {"bundle/plans.json": edit_json(set_in_plan(1, "fleet", "other"))}),
    Case("aggregate-plan-device-twice", AGG, 1, ("plan #2: device 'd0' is planned twice",),
         {"bundle/plans.json": edit_json(set_in_plan(1, "device", "d0"))}),
    Case("aggregate-plan-shard-outside-the-bundle", AGG, 1, ("field 'shard_id' must be letters, digits",),
         {"bundle/plans.json": edit_json(set_in_plan(0, "shard_id", "../../x"))}),
    Case("aggregate-weights-corrupt", AGG, 1, ("initial weights", "is not a readable safetensors file", REBUNDLE),
         {"bundle/student_init.safetensors": b"garbage"}),
    Case("aggregate-weights-empty", AGG, 1, ("student_init.safetensors is not a readable safetensors file",),
         {"bundle/student_init.safetensors": b""}),
    Case("aggregate-student-not-tflite", AGG, 1, ("student program", "is not a TFLite model"),
         {"bundle/student.tflite": b"garbage"}),
    Case("aggregate-shard-missing", AGG, 1, ("plan names shard p1 but", "p1.tflite is missing"),
         {"bundle/shards/p1.tflite": REMOVE}),
    Case("aggregate-shard-not-tflite", AGG, 1, ("shard p1", "is not a TFLite model"),
         {"bundle/shards/p1.tflite": b"x"}),
    Case("aggregate-signing-key-missing", AGG, 1, ("signing key", "fleet-signing.key not found",
                                                   "python -m cloud provision"), {"fleet-signing.key": REMOVE}),
    Case("aggregate-signing-key-corrupt", AGG, 1, ("is not an unencrypted PEM private key", "fleet-signing.key"),
         {"fleet-signing.key": "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"}),
    Case("aggregate-signing-key-is-the-public-one", AGG, 1, ("(it holds a public key)",),
         {"fleet-signing.key": copy_of("fleet-signing.pub")}),
    Case("aggregate-signing-key-is-a-directory", AGG, 1, ("fleet-signing.key is a directory; pass the key file",),
         {"fleet-signing.key": DIR}),
    Case("aggregate-holdout-missing", (*AGG, "--holdout", "{d}/none.npz"), 1,
         ("holdout file", "none.npz not found", "DIR/test.npz")),
    Case("aggregate-holdout-corrupt", (*AGG, "--holdout", "{d}/h.npz"), 1, ("h.npz is not a readable .npz archive",),
         {"h.npz": b"garbage"}),
    Case("aggregate-holdout-without-labels", (*AGG, "--holdout", "{d}/h.npz"), 1, ("h.npz has no array 'y'",),
         {"h.npz": npz(x=IMAGES)}),
    Case("aggregate-student-does-not-load", (*AGG, "--holdout", "{d}/h.npz"), 1,
         ("the bundle's student program does not load in LiteRT", REBUNDLE),
         {"h.npz": npz(x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))}),
    Case("aggregate-checkpoint-is-a-file", AGG, 1, ("checkpoint directory", "ckpt is a file; pass a directory"),
         {"ckpt": "x"}),
    Case("aggregate-checkpoint-state-corrupt", AGG, 1, ("state.json is corrupt", "delete it to start over"),
         {"ckpt/state.json": "{"}),
    Case("aggregate-checkpoint-weights-corrupt", AGG, 1, ("checkpoint weights", "is not a readable safetensors",
                                                          "to start over"),
         {"ckpt/state.json": '{"version": 3}', "ckpt/weights-v3.safetensors": b"x"}),
    Case("aggregate-password-file-is-a-directory", (*AGG, "--username", "u", "--password-file", "{d}/pw"), 1,
         ("--password-file", "pw is a directory"), {"pw": DIR}),
    Case("aggregate-password-file-empty", (*AGG, "--username", "u", "--password-file", "{d}/pw"), 1,
         ("pw is empty",), {"pw": ""}),
    Case("aggregate-tls-file-missing", (*AGG, "--tls-ca", "{d}/ca.crt", "--tls-cert", "{d}/c.crt", "--tls-key",
                                        "{d}/c.key"), 1, ("--tls-ca", "ca.crt not found", "python -m cloud provision")),
    Case("aggregate-tls-cert-without-key", (*AGG, "--tls-cert", "{d}/c.crt"), 2, ("go together",)),
    Case("aggregate-broker-closed-port", AGG, 1, ("cannot reach MQTT broker at 127.0.0.1:", "pass --broker host:port")),
    Case("aggregate-broker-port-zero", (*AGG[:-1], "127.0.0.1:0"), 2, ("port 0 is out of range 1..65535",)),
    Case("aggregate-workers-with-coordinator-only", (*AGG, "--workers", "2", "--coordinator-only"), 2,
         ("argument --coordinator-only: not allowed with argument --workers",)),
    Case("aggregate-zero-workers", (*AGG, "--workers", "0"), 2, ("argument --workers: must be at least 1",)),
    Case("aggregate-workers-broker-closed-port", (*AGG, "--workers", "2"), 1,
         ("cannot reach MQTT broker at 127.0.0.1:", "pass --broker host:port")),
    # python -m cloud aggregate-worker: its id, its meters, the bundle, the broker
    Case("worker-id-with-slash", (*WORKER, "a/b"), 2, ("worker id 'a/b': use 1 to 64 letters, digits",)),
    Case("worker-gateway-of-nobody", (*WORKER, "g1", "--gateway-for", " , "), 2,
         ("--gateway-for needs at least one device id",)),
    Case("worker-gateway-unknown-meter", (*WORKER, "g1", "--gateway-for", "d0,ghost"), 1,
         ("--gateway-for names devices not in the bundle's plan: ['ghost']",)),
    Case("worker-bundle-missing", ("cloud", "aggregate-worker", "--bundle", "{d}/nowhere", "--id", "w1"), 1,
         ("nowhere",)),
    Case("worker-broker-closed-port", (*WORKER, "w1"), 1, ("cannot reach MQTT broker at 127.0.0.1:",)),
    # python -m cloud plan / profile: the fleet file, the teacher directory, --out, the flags
    Case("plan-fleet-missing", (*PLAN[:3], "{d}/none.toml", *PLAN[4:]), 1, ("none.toml: no such file; pass the path",)),
    Case("plan-fleet-is-a-directory", (*PLAN[:3], "{d}/f.toml", *PLAN[4:]), 1,
         ("f.toml: is a directory; pass a fleet file",), {"f.toml": DIR}),
    Case("plan-fleet-not-utf8", PLAN, 1, ("fleet.toml: is not UTF-8 text",), {"fleet.toml": b"\xff\xfe\x00x"}),
    Case("plan-fleet-syntax-error", PLAN, 1, ("fleet.toml: TOML syntax error",), {"fleet.toml": "x = [\n"}),
    Case("plan-fleet-nan-budget", PLAN, 1, ("fleet.toml:5: device 'x' field 'flops_per_epoch'",),
         {"fleet.toml": '[[device]]\nid = "x"\ntarget = "linux"\nsamples = 3\nflops_per_epoch = nan\n'}),
    Case("plan-fleet-wrong-extension", (*PLAN[:3], "{d}/fleet.json", *PLAN[4:]), 1,
         ("a fleet file must end in .toml, .yaml or .yml",), {"fleet.json": "{}"}),
    Case("plan-teacher-missing", (*PLAN[:5], "{d}/none", *PLAN[6:]), 1, ("python -m simulator teacher --out",)),
    Case("plan-teacher-model-damaged", PLAN, 1, ("teacher.keras is not a Keras model archive",
                                                 "python -m simulator teacher --out")),
    Case("plan-teacher-json-corrupt", PLAN, 1, ("teacher.json line 1: not valid JSON",),
         {"teacher/teacher.json": "{"}),
    Case("plan-teacher-holdout-without-labels", PLAN, 1, ("holdout.npz has no array 'y'",),
         {"teacher/holdout.npz": npz(x=IMAGES)}),
    Case("plan-out-inside-a-file", (*PLAN[:7], "{d}/fleet.toml/plan.json"), 1,
         ("fleet.toml is a file, not a directory",)),
    Case("plan-infinite-lambda", (*PLAN, "--lambda", "inf"), 2, ("argument --lambda: must be >= 0 and finite",)),
    Case("plan-unknown-solver", (*PLAN, "--solver", "fast"), 2, ("argument --solver: invalid choice: 'fast'",)),
    Case("profile-teacher-model-damaged", ("cloud", "profile", "--teacher", "{d}/teacher"), 1,
         ("teacher.keras is not a Keras model archive",)),
    # python -m cloud provision
    Case("provision-fleet-missing", ("cloud", "provision", "--fleet", "{d}/none.toml", "--out", "{d}/pki"), 1,
         ("--fleet", "none.toml not found",)),
    Case("provision-bundle-corrupt", ("cloud", "provision", "--fleet", "{d}", "--out", "{d}/pki"), 1,
         ("bundle.json line 1: not valid JSON", REBUNDLE), {"bundle/bundle.json": "{"}),
    Case("provision-out-is-a-file", ("cloud", "provision", "--fleet", "{d}/fleet.toml", "--out", "{d}/fleet.toml"),
         1, ("--out", "is a file; pass a directory")),
    Case("provision-out-holds-a-ca", ("cloud", "provision", "--fleet", "{d}/fleet.toml", "--out", "{d}/pki"), 1,
         ("already holds a fleet CA", "pass a new --out"), {"pki/ca/ca.key": "key"}),
    Case("provision-days-too-many", ("cloud", "provision", "--fleet", "{d}/fleet.toml", "--out", "{d}/pki",
                                     "--days", "99999999"), 2, ("argument --days: must be 1..36,500 days",)),
    Case("provision-host-not-an-address", ("cloud", "provision", "--fleet", "{d}/fleet.toml", "--out", "{d}/pki",
                                           "--host", "a b"), 2, ("argument --host: 'a b' is neither an IP address",)),
    Case("provision-port-out-of-range", ("cloud", "provision", "--fleet", "{d}/fleet.toml", "--out", "{d}/pki",
                                         "--port", "70000"), 2, ("argument --port: must be a TCP port 1..65535",)),
    Case("provision-topic-fleet-differs", ("cloud", "provision", "--fleet", "{d}", "--out", "{d}/pki",
                                           "--topic-fleet", "other"), 1, ("differs from the bundle's fleet 'demo'",)),
    Case("cloud-unknown-verb", ("cloud", "fly"), 2, ("argument verb: invalid choice: 'fly'",)),
    # python -m export
    Case("export-plan-missing", ("export", "--plan", "{d}/none.json", "--out", "{d}/o"), 1,
         ("plan file", "none.json not found", "python -m cloud plan")),
    Case("export-plan-is-a-directory", ("export", "--plan", "{d}/teacher", "--out", "{d}/o"), 1,
         ("teacher is a directory; pass the plan.json",)),
    Case("export-plan-not-utf8", EXPORT, 1, ("plan.json as text",), {"plan.json": b"\xff\xfe{"}),
    Case("export-plan-truncated", EXPORT, 1, ("plan.json line 1: not valid JSON", "python -m cloud plan"),
         {"plan.json": truncate(20)}),
    Case("export-plan-shard-id-not-a-string", EXPORT, 1, ("devices[0].shard_id [1] is not in 'shards'",),
         {"plan.json": edit_json(set_key("devices", [{"shard_id": [1], "target": "linux"}]))}),
    Case("export-plan-unknown-target", EXPORT, 1, ("unknown target 'fpga'",),
         {"plan.json": edit_json(lambda doc: doc["shards"]["p1"].__setitem__("targets", ["fpga"]))}),
    Case("export-teacher-model-damaged", EXPORT, 1, ("teacher.keras is not a Keras model archive",)),
    Case("export-out-inside-a-file", ("export", "--plan", "{d}/plan.json", "--out", "{d}/plan.json/o"), 1,
         ("plan.json is a file, not a directory",)),
    Case("export-headroom-nan", (*EXPORT, "--arena-headroom", "nan"), 2, ("argument --arena-headroom",)),
    Case("export-no-out-flag", ("export", "--plan", "{d}/plan.json"), 2, ("required: --out",)),
    # python -m edge run: the device's data, the fleet key, the outbox, the broker, the flags
    Case("edge-data-missing", (*EDGE[:5], "{d}/none.npz", *EDGE[6:]), 1,
         ("device data", "none.npz not found", "python -m simulator prepare --out DIR")),
    Case("edge-data-empty-file", EDGE, 1, ("d0.npz is not a readable .npz archive",), {"devices/d0.npz": b""}),
    Case("edge-data-truncated", EDGE, 1, ("d0.npz is not a readable .npz archive",), {"devices/d0.npz": truncate(100)}),
    Case("edge-data-is-npy", (*EDGE[:5], "{d}/a.npy", *EDGE[6:]), 1, ("a single .npy array",),
         {"a.npy": lambda p: np.save(p, IMAGES)}),
    Case("edge-data-is-a-directory", (*EDGE[:5], "{d}/devices", *EDGE[6:]), 1, ("devices is a directory",)),
    Case("edge-data-no-examples", EDGE, 1, ("x must be a non-empty numeric array",),
         {"devices/d0.npz": npz(x=np.zeros((0, 8, 8, 1)))}),
    Case("edge-data-nan", EDGE, 1, ("x holds NaN or infinity",), {"devices/d0.npz": npz(x=np.full((4, 8), np.nan))}),
    Case("edge-data-labels-miscounted", EDGE, 1, ("y must be one number per example (4)",),
         {"devices/d0.npz": npz(x=IMAGES, y=np.zeros(3))}),
    Case("edge-fleet-key-missing", (*EDGE[:7], "{d}/none.pub", *EDGE[8:]), 1, ("none.pub not found",)),
    Case("edge-fleet-key-corrupt", EDGE, 1, ("is not a PEM public key", "fleet-signing.pub"),
         {"fleet-signing.pub": "garbage"}),
    Case("edge-fleet-key-is-the-private-one", (*EDGE[:7], "{d}/fleet-signing.key", *EDGE[8:]), 1,
         ("(it holds a private key: keep that off the device)",)),
    Case("edge-outbox-is-a-file", EDGE, 1, ("--outbox", "outbox is a file; pass a directory"), {"outbox": "x"}),
    Case("edge-broker-closed-port", EDGE, 1, ("cannot reach MQTT broker at 127.0.0.1:", "pass --broker host:port")),
    Case("edge-negative-seed", (*EDGE, "--insecure-seed", "-1"), 2,
         ("argument --insecure-seed: must be an integer in 0..4294967295",)),
    Case("edge-fleet-not-a-topic-name", (*EDGE, "--fleet", "a/b"), 2, ("argument --fleet: 'a/b' must be letters",)),
    Case("edge-broker-wrong-scheme", (*EDGE[:-1], "http://127.0.0.1:1883"), 2, ("scheme 'http' is not supported",)),
    # python -m simulator: every verb's flags, data and output directory
    Case("prepare-zero-devices", (*PREPARE, "--devices", "0"), 2, ("argument --devices: must be at least 1",)),
    Case("prepare-negative-rounds", (*PREPARE, "--rounds", "-2"), 2, ("argument --rounds: must be at least 1",)),
    Case("prepare-out-is-a-file", ("simulator", "prepare", "--out", "{d}/fleet.toml"), 1,
         ("--out", "fleet.toml is a file; pass a directory")),
    Case("prepare-fleet-not-a-topic-name", (*PREPARE, "--fleet", "a/b"), 2, ("argument --fleet: 'a/b'",)),
    Case("prepare-data-missing", (*PREPARE, "--data", "{d}/none.npz"), 1, ("--data", "none.npz: no such file",
                                                                          "drop --data")),
    Case("prepare-task-and-data", (*PREPARE, "--task", "plaid", "--data", "{d}/none.npz"), 2,
         ("pass --task or --data, not both",)),
    Case("prepare-cloud-fraction-too-big", (*PREPARE, "--cloud-fraction", "5"), 2,
         ("argument --cloud-fraction: must be below 0.8",)),
    Case("prepare-more-samples-than-the-data", (*PREPARE, "--min-samples-per-device", "100000"), 1,
         ("cannot give even one device 100000", "--min-samples-per-device")),
    Case("prepare-too-many-devices-to-partition", (*PREPARE, "--devices", "200", "--device-sampling", "partition"), 1,
         ("cannot give 200 devices 8 each", "pass --devices 101 or fewer", "--device-sampling pool")),
    Case("prepare-unknown-device-sampling", (*PREPARE, "--device-sampling", "lots"), 2,
         ("argument --device-sampling: invalid choice: 'lots'",)),
    Case("run-zero-samples-per-device", (*RUN, "--samples-per-device", "0"), 2,
         ("argument --samples-per-device: must be at least 1",)),
    Case("compare-negative-samples-per-device", ("simulator", "compare", "--out", "{d}/c", "--samples-per-device",
                                                 "-3"), 2, ("argument --samples-per-device: must be at least 1",)),
    Case("audit-zero-samples-per-device", ("simulator", "audit", "--out", "{d}/a", "--samples-per-device", "0"), 2,
         ("argument --samples-per-device: must be at least 1",)),
    Case("run-epsilon-nan", (*RUN, "--dp", "central", "--target-epsilon", "nan"), 2,
         ("argument --target-epsilon: must be positive and finite",)),
    Case("run-epsilon-infinite", (*RUN, "--dp", "central", "--target-epsilon", "inf"), 2,
         ("argument --target-epsilon: must be positive and finite",)),
    Case("run-noise-infinite", (*RUN, "--dp", "local", "--noise-multiplier", "inf"), 2,
         ("argument --noise-multiplier: must be >= 0 and finite",)),
    Case("run-noise-without-dp", (*RUN, "--target-epsilon", "3"), 2, ("add --dp local or --dp central",)),
    Case("run-tiny-chunk-limit", (*RUN, "--chunk-limit", "100"), 2,
         ("--chunk-limit must be at least 1024 bytes, got 100",)),
    Case("run-alpha-out-of-range", (*RUN, "--alpha", "2"), 2, ("argument --alpha: must be between 0 and 1",)),
    Case("run-unknown-dp-mode", (*RUN, "--dp", "sometimes"), 2, ("argument --dp: invalid choice: 'sometimes'",)),
    Case("run-negative-seed", (*RUN, "--seed", "-1"), 2, ("argument --seed: must be an integer in 0..4294967295",)),
    Case("chaos-negative-seed", ("simulator", "chaos", "--out", "{d}/c", "--seed", "-1"), 2,
         ("argument --seed: must be an integer in 0..4294967295",)),
    Case("run-run-dir-is-a-file", ("simulator", "run", "--run-dir", "{d}/fleet.toml"), 1,
         ("--run-dir", "fleet.toml is a file; pass a directory")),
    Case("run-broker-closed-port", (*RUN, "--broker", "127.0.0.1:{port}"), 1,
         ("no MQTT broker answers at 127.0.0.1:", "omit --broker")),
    Case("run-aggregators-on-amqtt", (*RUN, "--aggregators", "2", "--broker", "amqtt"), 1,
         ("--aggregators 2 shares updates", "pass --broker mosquitto")),
    Case("run-zero-aggregators", (*RUN, "--aggregators", "0"), 2, ("argument --aggregators: must be at least 1",)),
    Case("teacher-out-is-a-file", ("simulator", "teacher", "--out", "{d}/fleet.toml"), 1, ("is a file",)),
    Case("teacher-data-missing", ("simulator", "teacher", "--out", "{d}/t", "--data", "{d}/none"), 1,
         ("--data", "no such file or directory",)),
    Case("teacher-seed-too-big", ("simulator", "teacher", "--out", "{d}/t", "--seed", "4294967296"), 2,
         ("argument --seed: must be an integer in 0..4294967295",)),
    Case("teacher-zero-epochs", ("simulator", "teacher", "--out", "{d}/t", "--epochs", "0"), 2,
         ("argument --epochs: must be at least 1",)),
    Case("compare-out-is-a-file", ("simulator", "compare", "--out", "{d}/fleet.toml"), 1, ("is a file",)),
    Case("compare-zero-epsilon", ("simulator", "compare", "--out", "{d}/c", "--target-epsilon", "0"), 2,
         ("argument --target-epsilon: must be positive",)),
    Case("compare-negative-seeds", ("simulator", "compare", "--out", "{d}/c", "--seeds", "0,-1"), 2,
         ("argument --seeds: seeds must be integers in 0..4294967295",)),
    Case("audit-out-is-a-file", ("simulator", "audit", "--out", "{d}/fleet.toml"), 1, ("is a file",)),
    Case("audit-zero-rounds", ("simulator", "audit", "--out", "{d}/a", "--rounds", "0"), 2,
         ("argument --rounds: must be at least 1",)),
    Case("noise-study-out-is-a-file", ("simulator", "noise-study", "--out", "{d}/fleet.toml"), 1, ("is a file",)),
    Case("noise-study-alpha-out-of-range", ("simulator", "noise-study", "--out", "{d}/n", "--alpha", "-1"), 2,
         ("argument --alpha: must be between 0 and 1",)),
    Case("dp-scaling-out-is-a-file", ("simulator", "dp-scaling", "--out", "{d}/fleet.toml"), 1, ("is a file",)),
    Case("dp-scaling-zero-fleet-size", ("simulator", "dp-scaling", "--out", "{d}/s", "--fleet-sizes", "10,0"), 2,
         ("argument --fleet-sizes: every value must be at least 1",)),
    Case("simulator-unknown-verb", ("simulator", "fly"), 2, ("argument verb: invalid choice: 'fly'",)),
    Case("run-unknown-engine", (*RUN, "--engine", "spark"), 2, ("argument --engine: invalid choice: 'spark'",)),
    Case("compare-unknown-engine", ("simulator", "compare", "--out", "{d}/c", "--engine", "dask"), 2,
         ("argument --engine: invalid choice: 'dask'",)),
    Case("run-ray-address-closed-port", (*RUN, "--engine", "ray", "--ray-address", "127.0.0.1:{port}"), 1,
         ("no Ray cluster answers at --ray-address 127.0.0.1:", "ray start --head", "drop --ray-address")),
    Case("dp-scaling-ray-address-closed-port", ("simulator", "dp-scaling", "--out", "{d}/s", "--engine", "ray",
                                                "--ray-address", "127.0.0.1:{port}"), 1,
         ("no Ray cluster answers at --ray-address 127.0.0.1:", "ray start --head")),
    Case("run-ray-address-not-host-port", (*RUN, "--engine", "ray", "--ray-address", "headnode"), 1,
         ("--ray-address 'headnode' is not HOST:PORT",)),
    Case("run-ray-address-without-ray-engine", (*RUN, "--ray-address", "127.0.0.1:6379"), 2,
         ("--ray-address names the Ray cluster of --engine ray: add --engine ray",)),
    Case("run-broker-host-without-broker", (*RUN, "--engine", "ray", "--broker-host", "meters.lan"), 2,
         ("--broker-host needs --broker",)),
]


def write_kit(root: Path) -> Path:
    """What the cases damage: a valid two-device bundle, its signing key pair, a device's data, a fleet file, a
    teacher directory whose model is not a Keras archive (cases that load the teacher fail before TensorFlow)
    and an export plan naming it."""
    from safetensors.numpy import save_file

    from cloud.fleet_bundle import RoundSettings
    from edge.plan import DevicePlan
    from edge.signed_artifact import write_signing_keypair

    values = {"fleet": "demo", "rounds": 2, "dp_mode": "none", "clip": 1.0, "noise_multiplier": 0.0, "delta": 1e-5,
              "max_epsilon": None, "quorum": 2, "deadline_s": 30.0}  # a field the settings no longer have is skipped
    settings = {f.name: values[f.name] for f in fields(RoundSettings) if f.name in values}
    (root / "bundle" / "shards").mkdir(parents=True)
    (root / "bundle" / "bundle.json").write_text(json.dumps(settings))
    plans = [json.loads(DevicePlan("demo", f"d{i}", "p1", "h", "s", 2).to_json()) for i in range(2)]
    (root / "bundle" / "plans.json").write_text(json.dumps(plans))
    (root / "bundle" / "student.tflite").write_bytes(TFLITE)
    (root / "bundle" / "shards" / "p1.tflite").write_bytes(TFLITE)
    save_file({"dense_0/kernel": np.zeros((64, 10), np.float32)}, str(root / "bundle" / "student_init.safetensors"))
    write_signing_keypair(root / "fleet-signing.key", root / "fleet-signing.pub")
    (root / "devices").mkdir()
    np.savez(root / "devices" / "d0.npz", x=IMAGES, y=np.zeros(4, np.int64))
    shutil.copyfile(REPO / "examples" / "fleet.toml", root / "fleet.toml")
    teacher = root / "teacher"
    teacher.mkdir()
    (teacher / "teacher.keras").write_bytes(b"not a zip archive")
    (teacher / "teacher.json").write_text(json.dumps({"num_exits": 1, "exit_accuracies": [0.9]}))
    np.savez(teacher / "calibration.npz", x=IMAGES)
    np.savez(teacher / "holdout.npz", x=IMAGES, y=np.zeros(4, np.int64))
    (root / "plan.json").write_text(json.dumps({"teacher_dir": "teacher", "shards": {"p1": {"k": 1, "targets":
                                                                                           ["linux"]}}}))
    return root


def lay_down(directory: Path, files: dict[str, Content]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is REMOVE or content is DIR:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            if content is DIR:
                path.mkdir()
        elif isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            assert callable(content), name
            content(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, float]]:
    """Every case's finished process and its wall time, all run at once."""
    kit = write_kit(tmp_path_factory.mktemp("kit"))
    cases_root = tmp_path_factory.mktemp("cases")
    port = str(closed_port())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(case: Case) -> tuple[subprocess.CompletedProcess, float]:
        directory = cases_root / case.name
        shutil.copytree(kit, directory)
        lay_down(directory, case.files)
        argv = [a.replace("{d}", str(directory)).replace("{port}", port) for a in case.argv]
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        return proc, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip((c.name for c in CASES), pool.map(run, CASES)))


def test_the_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_user_error_is_one_line_naming_the_problem_and_the_fix(case: Case, outcomes) -> None:
    proc, seconds = outcomes[case.name]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: "), lines[0]
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    assert "-----BEGIN" not in proc.stderr  # a key file's contents are never echoed
    assert proc.returncode == case.code, (proc.returncode, lines[0])
    assert seconds < 60, f"{case.name} took {seconds:.0f} s to fail"
