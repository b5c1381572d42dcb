"""The trainable student exports to builtin-only TFLite and trains in LiteRT and TFLite-Micro."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from cloud.student import build_student, student_weight_names
from edge.student_runtime import TrainableStudent
from export.student import (
    ALL_SIGNATURES,
    assert_builtins_only,
    export_trainable_student,
    subgraph_input_names,
)

BATCH = 16
HP = dict(alpha=0.7, tau=2.0, lr=0.05)


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    """400 digits scaled to [0, 1], one-hot labels and a logistic-regression teacher's logits."""
    x, y = load_digits(return_X_y=True)
    x, y = (x[:400] / 16.0).astype(np.float32), y[:400]
    teacher = LogisticRegression(max_iter=300).fit(x, y)
    return {
        "x": x,
        "y": np.eye(10, dtype=np.float32)[y],
        "t": teacher.decision_function(x).astype(np.float32),
    }


@pytest.fixture(scope="module")
def student():
    """A small seeded Keras student."""
    return build_student(input_dim=64, hidden=(32,), num_classes=10, seed=0)


@pytest.fixture(scope="module")
def full_bytes(student) -> bytes:
    """The four-signature trainable student."""
    return export_trainable_student(student, batch_size=BATCH)


@pytest.fixture(scope="module")
def train_only_bytes(student) -> bytes:
    """The train-only variant for TFLite-Micro."""
    return export_trainable_student(student, batch_size=BATCH, signatures=("train",))


def test_exported_student_has_only_builtin_ops(full_bytes, train_only_bytes):
    ops = assert_builtins_only(full_bytes)
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "FULLY_CONNECTED"} <= set(ops)
    assert set(TrainableStudent.from_bytes(full_bytes).signatures) == set(ALL_SIGNATURES)
    assert set(assert_builtins_only(train_only_bytes)) <= set(ops)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        assert_builtins_only(b"definitely not a model")


def test_student_loss_falls_when_trained_in_litert(full_bytes, digits):
    s = TrainableStudent.from_bytes(full_bytes)
    assert (s.batch_size, s.input_dim, s.num_classes) == (BATCH, 64, 10)
    losses = s.fit(digits["x"], digits["y"], digits["t"], epochs=5, rng=np.random.default_rng(0), **HP)
    assert len(losses) == 5 and all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses
    acc = (s.predict_logits(digits["x"]).argmax(1) == digits["y"].argmax(1)).mean()
    assert acc > 0.8


def test_student_loss_falls_when_trained_in_tflite_micro(train_only_bytes, digits):
    """TFLM runs subgraph 0 only, so it gets the train-only model; inputs go in subgraph order."""
    from tflite_micro.python.tflite_micro import runtime

    micro = runtime.Interpreter.from_bytes(train_only_bytes)
    litert = TrainableStudent.from_bytes(train_only_bytes)
    order = subgraph_input_names(train_only_bytes, "train")
    assert sorted(order) == sorted(["x", "y", "teacher_logits", "alpha", "tau", "lr"])
    rng = np.random.default_rng(1)
    idx = rng.permutation(len(digits["x"]))[: 20 * BATCH].reshape(20, BATCH)
    losses = []
    for epoch in range(5):
        for step, rows in enumerate(idx):
            feeds = {"x": digits["x"][rows], "y": digits["y"][rows], "teacher_logits": digits["t"][rows]}
            feeds.update({k: np.array(v, dtype=np.float32) for k, v in HP.items()})
            for i, name in enumerate(order):
                micro.set_input(feeds[name], i)
            micro.invoke()
            losses.append(float(micro.get_output(0)))
            if epoch == 0 and step == 0:
                first = litert.train_step(feeds["x"], feeds["y"], feeds["teacher_logits"], **HP)
                assert losses[0] == pytest.approx(first, rel=1e-5, abs=1e-6)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20]), (losses[:20], losses[-20:])


def test_set_then_get_weights_round_trips(full_bytes, student):
    s = TrainableStudent.from_bytes(full_bytes)
    names = student_weight_names(student)
    assert names == ["dense_0/kernel", "dense_0/bias", "dense_1/kernel", "dense_1/bias"]
    assert s.weight_names() == names
    rng = np.random.default_rng(2)
    new = {n: rng.normal(size=w.shape).astype(np.float32) for n, w in zip(names, student.get_weights())}
    s.set_weights(new)
    got = s.get_weights()
    assert list(got) == names
    for n in names:
        np.testing.assert_array_equal(got[n], new[n])
    with pytest.raises(ValueError, match="missing"):
        s.set_weights({k: v for k, v in new.items() if k != "dense_1/bias"})
    with pytest.raises(ValueError, match="shape"):
        s.set_weights({**new, "dense_0/bias": np.zeros(3, np.float32)})


def test_litert_predictions_match_keras(full_bytes, student, digits):
    s = TrainableStudent.from_bytes(full_bytes)
    s.fit(digits["x"][:64], digits["y"][:64], digits["t"][:64], epochs=1, rng=np.random.default_rng(3))
    s.set_weights(dict(zip(student_weight_names(student), student.get_weights())))
    x = digits["x"][:37]  # not a multiple of the batch: exercises padding
    np.testing.assert_allclose(s.predict_logits(x), student(x).numpy(), atol=1e-4)


def test_runtime_rejects_bad_inputs(full_bytes, digits):
    s = TrainableStudent.from_bytes(full_bytes)
    x, y, t = digits["x"][:BATCH], digits["y"][:BATCH], digits["t"][:BATCH]
    with pytest.raises(ValueError, match="batch_size"):
        s.train_step(x[:3], y[:3], t[:3], **HP)
    with pytest.raises(ValueError, match="shape"):
        s.predict_logits(x[:, :10])
    with pytest.raises(ValueError, match="tau"):
        s.train_step(x, y, t, alpha=0.7, tau=0.0, lr=0.05)
    with pytest.raises(ValueError, match="rng"):
        s.fit(x, y, t, epochs=1, rng=0)
    with pytest.raises(ValueError, match="NaN"):
        s.predict_logits(np.full((2, 64), np.nan))


def test_shared_read_only_weights_are_checked_again_when_an_array_is_swapped(full_bytes):
    """The check of a process's shared (read-only) model is skipped only for the very arrays it passed."""
    rt = TrainableStudent.from_bytes(full_bytes)
    weights = rt.get_weights()
    for array in weights.values():
        array.setflags(write=False)
    assert rt.shape_mismatch(weights) is None
    assert rt.shape_mismatch(weights) is None  # the same arrays: not read again
    name = next(iter(weights))
    bad = np.full_like(weights[name], np.nan)
    bad.setflags(write=False)
    weights[name] = bad
    assert "NaN" in rt.shape_mismatch(weights)
    weights.pop(name)
    assert "missing" in rt.shape_mismatch(weights)
