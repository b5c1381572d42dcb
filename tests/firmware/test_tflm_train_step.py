"""The student's functional train step (export/student_train_step.py) trains as LiteRT's variable-based
student (export/student.py, edge/student_runtime.py): in TFLite-Micro's Python interpreter always, and in
the firmware glue (host build) when TFLM_DIR is present. Tolerances are stated with each comparison."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from cloud.student import build_student
from edge.student_runtime import TrainableStudent
from export.student import export_trainable_student
from export.student_train_step import (
    VARIABLE_OPS,
    DenseStack,
    assert_builtins_only,
    export_student_train_step,
    grad_key,
    initial_weights,
    sgd_update,
    signature_tensor_order,
    step_for_stack,
)

from .tflm_build import COLD_BUILD_SECONDS, TflmFirmware, firmware_or_skip, run_driver

BATCH, STEPS, HIDDEN = 16, 10, (64,)  # tflm_build.METER_PLUS_EXPORT's student
HP = (0.7, 2.0, 0.05)  # alpha, tau, lr
WEIGHT_TOL = 1e-5  # float32 reductions in another order over 10 steps; the weights move by ~1e-1


@pytest.fixture(scope="module")
def batches() -> list[dict[str, np.ndarray]]:
    """10 batches of digits with one-hot labels (the last batch half unlabelled) and teacher-like logits."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(3)
    out = []
    for s in range(STEPS):
        idx = rng.choice(len(x), BATCH, replace=False)
        onehot = np.eye(10, dtype=np.float32)[y[idx]]
        if s == STEPS - 1:
            onehot[BATCH // 2:] = 0.0  # samples without labels: only the KD term
        teacher = (4.0 * np.eye(10, dtype=np.float32)[y[idx]] + rng.normal(0, 1, (BATCH, 10))).astype(np.float32)
        out.append({"x": x[idx], "y": onehot, "teacher_logits": teacher})
    return out


@pytest.fixture(scope="session")
def tflm_firmware(tmp_path_factory, default_teacher_dir) -> TflmFirmware:
    """The glue's host driver on the exported configuration (shared with test_tflm_shard.py)."""
    return firmware_or_skip(tmp_path_factory, default_teacher_dir)


@pytest.fixture(scope="module")
def student():
    return build_student(input_dim=64, hidden=HIDDEN, num_classes=10, seed=0)


@pytest.fixture(scope="module")
def litert_run(student, batches) -> tuple[list[float], dict[str, np.ndarray]]:
    """LiteRT running the existing four-signature student: losses of 10 steps and the final weights."""
    rt = TrainableStudent.from_bytes(export_trainable_student(student, batch_size=BATCH))
    losses = [rt.train_step(b["x"], b["y"], b["teacher_logits"], *HP) for b in batches]
    return losses, rt.get_weights()


def tflm_python_run(model: bytes, weights: dict[str, np.ndarray], batches) -> tuple[list[float], dict]:
    """The functional step in TFLite-Micro's Python interpreter, applying each step's gradients as the glue does."""
    from tflite_micro.python.tflite_micro import runtime

    ins, outs = signature_tensor_order(model)
    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    w = {k.replace("/", "__"): v.copy() for k, v in weights.items()}
    losses = []
    for b in batches:
        feed = {**w, **b, "alpha": np.float32(HP[0]), "tau": np.float32(HP[1])}
        for i, key in enumerate(ins):
            interp.set_input(np.asarray(feed[key], np.float32), i)
        interp.invoke()
        got = {key: interp.get_output(i).copy() for i, key in enumerate(outs)}
        losses.append(float(got["loss"]))
        w = {k: sgd_update(w[k], got["grad_" + k], HP[2]) for k in w}
    return losses, {k.replace("__", "/"): v for k, v in w.items()}


def test_functional_step_has_no_variables_and_names_every_weight(student):
    model = export_student_train_step(student, BATCH)
    assert not set(assert_builtins_only(model)) & VARIABLE_OPS
    ins, outs = signature_tensor_order(model)
    names = ["dense_0/kernel", "dense_0/bias", "dense_1/kernel", "dense_1/bias"]
    assert sorted(ins) == sorted([n.replace("/", "__") for n in names] + ["x", "y", "teacher_logits", "alpha", "tau"])
    assert sorted(outs) == sorted(["loss"] + [grad_key(n) for n in names])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        export_student_train_step(student, 0)


def test_functional_step_in_tflm_python_trains_as_litert(student, batches, litert_run):
    losses, weights = tflm_python_run(export_student_train_step(student, BATCH), initial_weights(student), batches)
    ref_losses, ref_weights = litert_run
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert losses[-1] < losses[0]  # it learns
    for name, ref in ref_weights.items():
        np.testing.assert_allclose(weights[name], ref, atol=WEIGHT_TOL, err_msg=name)
        assert np.abs(ref - initial_weights(student)[name]).max() > 1e-3  # the weights did move


def test_step_from_a_dense_stack_equals_the_keras_students(student, batches):
    """The exporter's CLI builds the step from widths alone (export does not import cloud): same numbers."""
    w0 = initial_weights(student)
    a = tflm_python_run(export_student_train_step(student, BATCH), w0, batches[:3])
    b = tflm_python_run(step_for_stack(DenseStack(64, HIDDEN, 10), BATCH), w0, batches[:3])
    assert a[0] == b[0]
    for name in w0:
        np.testing.assert_array_equal(a[1][name], b[1][name])


def _driver_input(weights: dict[str, np.ndarray], batches, lr: float = HP[2]) -> bytes:
    packed = [np.concatenate([w.ravel() for w in weights.values()])]
    for b in batches:
        packed += [b["x"].ravel(), b["y"].ravel(), b["teacher_logits"].ravel(),
                   np.array([HP[0], HP[1], lr], np.float32)]
    return np.concatenate(packed).astype(np.float32).tobytes()


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_firmware_train_step_matches_litert_after_10_steps(tflm_firmware, student, batches, litert_run, tmp_path):
    w0 = initial_weights(student)
    (tmp_path / "in.bin").write_bytes(_driver_input(w0, batches))
    run_driver(tflm_firmware.driver, "train", tmp_path / "in.bin", tmp_path / "out.bin", STEPS)
    out = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
    losses, flat = out[:STEPS], out[STEPS:]
    ref_losses, ref_weights = litert_run
    ref_flat = np.concatenate([ref_weights[n].ravel() for n in w0])
    diff = float(np.abs(flat - ref_flat).max())
    print(f"\nfirmware train step vs LiteRT after {STEPS} steps: max |loss diff| "
          f"{np.abs(losses - ref_losses).max():.3g}, max |weight diff| {diff:.3g} "
          f"(weights moved up to {np.abs(ref_flat - np.concatenate([v.ravel() for v in w0.values()])).max():.3g})")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert diff <= WEIGHT_TOL
    # The firmware and TFLM's Python interpreter run the same reference kernels on the same graph.
    py_losses, py_weights = tflm_python_run(export_student_train_step(student, BATCH), w0, batches)
    np.testing.assert_allclose(flat, np.concatenate([py_weights[n].ravel() for n in w0]), atol=1e-6)


@pytest.mark.timeout(COLD_BUILD_SECONDS)
def test_firmware_keeps_its_weights_when_a_step_is_not_finite(tflm_firmware, student, batches, tmp_path):
    (tmp_path / "in.bin").write_bytes(_driver_input(initial_weights(student), batches[:1], lr=float("nan")))
    done = run_driver(tflm_firmware.driver, "train", tmp_path / "in.bin", tmp_path / "out.bin", 1, check=False)
    assert done.returncode == 3 and "NaN or inf: weights kept" in done.stderr
    out = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], np.concatenate([w.ravel() for w in initial_weights(student).values()]))
