"""On-device student training with LiteRT signature runners (numpy + LiteRT only, never TensorFlow).

The model comes from export.student.export_trainable_student. Weight names are
"dense_<i>/kernel" / "dense_<i>/bias"; the model's signature keys spell "/" as "__".
A train-only model (signatures=("train",), the TFLite-Micro variant) trains here too,
but then infer/get_weights/set_weights raise ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge import litert

KEY_SEPARATOR = "__"
TRAIN_INPUTS = ("x", "y", "teacher_logits", "alpha", "tau", "lr")
ONE_HOT_TOLERANCE = 1e-3 + 1e-5  # how far a row of y_onehot may sum from 1 (numpy.allclose's atol and rtol at 1)


def _as_2d(name: str, a: Any, cols: int) -> np.ndarray:
    """Validate a finite float matrix with `cols` columns and return it as float32."""
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise ValueError(f"{name} must have shape (n, {cols}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_hparams(alpha: float, tau: float, lr: float) -> None:
    """Raise ValueError unless 0 <= alpha <= 1, tau > 0 and lr > 0 (all finite)."""
    if not (np.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be > 0, got {tau}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr}")


def _stable_name(key: str) -> str:
    """The weight name (dense_0/kernel) of a signature key (dense_0__kernel)."""
    return key.replace(KEY_SEPARATOR, "/")


def _layer_order(name: str) -> tuple[int, bool, str]:
    """Sort key putting dense_<i>/kernel before dense_<i>/bias, layers by index."""
    layer, _, kind = name.partition("/")
    idx = layer.rsplit("_", 1)[-1]
    return (int(idx) if idx.isdigit() else -1, kind != "kernel", name)


class TrainableStudent:
    """A trainable student TFLite model driven through its LiteRT signature runners."""

    def __init__(self, interpreter: Any):
        """Wrap an interpreter whose model has at least the `train` signature."""
        self._interp = interpreter
        sigs = interpreter.get_signature_list()
        if "train" not in sigs:
            raise ValueError(
                f"model has no 'train' signature (signatures: {sorted(sigs)}): "
                "export it with export.student.export_trainable_student"
            )
        missing = set(TRAIN_INPUTS) - set(sigs["train"]["inputs"])
        if missing:
            raise ValueError(f"'train' signature lacks inputs {sorted(missing)}")
        self._runners = {k: interpreter.get_signature_runner(k) for k in sigs}
        self.signatures: tuple[str, ...] = tuple(sorted(sigs))
        details = self._runners["train"].get_input_details()
        self.batch_size, self.input_dim = (int(d) for d in details["x"]["shape"])
        self.num_classes = int(details["y"]["shape"][1])
        self._weight_inputs_read: tuple[tuple[str, str, tuple[int, ...]], ...] | None = None
        self._checked_frozen: list[tuple[str, np.ndarray]] = []  # the last read-only weights found to fit
        self.program: bytes | None = None  # the flatbuffer it was loaded from (from_bytes): what a copy is built from

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> TrainableStudent:
        """Load a trainable student from TFLite flatbuffer bytes."""
        student = cls(litert.load_interpreter(model_bytes))
        student.program = bytes(model_bytes)
        return student

    def _runner(self, key: str) -> Any:
        """The signature runner for `key`, or a ValueError naming the export option."""
        if key not in self._runners:
            raise ValueError(
                f"model has no '{key}' signature (has {sorted(self._runners)}); export it with "
                f"signatures including '{key}'"
            )
        return self._runners[key]

    def train_step(self, x: Any, y: Any, teacher_logits: Any, alpha: float, tau: float, lr: float) -> float:
        """One SGD step on exactly one batch; returns the batch loss before the update."""
        b, d, c = self.batch_size, self.input_dim, self.num_classes
        x = _as_2d("x", x, d)
        y = _as_2d("y", y, c)
        t = _as_2d("teacher_logits", teacher_logits, c)
        if not x.shape[0] == y.shape[0] == t.shape[0] == b:
            raise ValueError(
                f"train_step needs exactly batch_size={b} rows, got x {x.shape[0]}, "
                f"y {y.shape[0]}, teacher_logits {t.shape[0]} (use fit for any size)"
            )
        _check_hparams(alpha, tau, lr)
        return self._step(x, y, t, alpha, tau, lr)

    def _step(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, alpha: float, tau: float, lr: float) -> float:
        """train_step without its checks, for callers that validated everything once (fit)."""
        out = self._runner("train")(
            x=x, y=y, teacher_logits=t,
            alpha=np.float32(alpha), tau=np.float32(tau), lr=np.float32(lr),
        )
        return float(out["loss"])

    def fit(
        self,
        x: Any,
        y_onehot: Any,
        teacher_logits: Any,
        epochs: int,
        rng: np.random.Generator,
        alpha: float = 0.7,
        tau: float = 2.0,
        lr: float = 0.05,
    ) -> list[float]:
        """Train for `epochs` shuffled passes (last batch topped up by resampling); per-epoch mean loss."""
        x = _as_2d("x", x, self.input_dim)
        y = _as_2d("y_onehot", y_onehot, self.num_classes)
        t = _as_2d("teacher_logits", teacher_logits, self.num_classes)
        n = x.shape[0]
        if n == 0 or y.shape[0] != n or t.shape[0] != n:
            raise ValueError(
                f"x, y_onehot and teacher_logits need the same non-zero number of rows, "
                f"got {n}, {y.shape[0]}, {t.shape[0]}"
            )
        if np.any(y < 0) or not np.all(np.abs(y.sum(axis=1) - 1.0) <= ONE_HOT_TOLERANCE):
            raise ValueError("y_onehot rows must be non-negative and sum to 1 (one-hot labels)")
        if not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError("rng must be a numpy.random.Generator (np.random.default_rng(seed))")
        _check_hparams(alpha, tau, lr)
        b, run = self.batch_size, self._runner("train")
        hyper = {"alpha": np.float32(alpha), "tau": np.float32(tau), "lr": np.float32(lr)}
        history = []
        for _ in range(int(epochs)):
            order = rng.permutation(n)
            short = (-n) % b
            if short:
                order = np.concatenate([order, rng.choice(n, size=short, replace=True)])
            xs, ys, ts = x[order], y[order], t[order]  # the epoch's rows in order: each batch a contiguous slice
            losses = [float(run(x=xs[i:i + b], y=ys[i:i + b], teacher_logits=ts[i:i + b], **hyper)["loss"])
                      for i in range(0, len(order), b)]
            history.append(float(np.mean(losses)))
        return history

    def predict_logits(self, x: Any) -> np.ndarray:
        """Logits for any number of rows (padded to the fixed batch internally)."""
        x = _as_2d("x", x, self.input_dim)
        runner, b, n = self._runner("infer"), self.batch_size, x.shape[0]
        out = np.empty((n, self.num_classes), dtype=np.float32)
        for start in range(0, n, b):
            chunk = x[start:start + b]
            batch = np.zeros((b, self.input_dim), dtype=np.float32)
            batch[: len(chunk)] = chunk
            out[start:start + len(chunk)] = runner(x=batch)["logits"][: len(chunk)]
        return out

    def accuracy(self, x: Any, y: Any) -> float:
        """Top-1 accuracy of the current weights on rows x (n, input_dim) with integer labels y."""
        return float(np.mean(np.argmax(self.predict_logits(x), axis=1) == np.asarray(y)))

    def weight_names(self) -> list[str]:
        """Stable weight names (dense_0/kernel, dense_0/bias, ...) in layer order; [] if train-only."""
        sigs = self._interp.get_signature_list()
        keys = sigs.get("get_weights", {}).get("outputs") or sigs.get("set_weights", {}).get("inputs") or []
        return sorted(map(_stable_name, keys), key=_layer_order)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights keyed by stable names (dense_0/kernel, ...), as float32 copies."""
        out = self._runner("get_weights")()
        named = {_stable_name(k): np.array(v, dtype=np.float32) for k, v in out.items()}
        return {name: named[name] for name in sorted(named, key=_layer_order)}

    def shape_mismatch(self, weights: Any) -> str | None:
        """Why `weights` cannot be this student's (names, shapes, finiteness), or None if they can."""
        if not isinstance(weights, dict):
            return "weights must be a dict {name: array} keyed like dense_0/kernel"
        if self._unchanged_since_checked(weights):
            return None  # the same read-only arrays as last time (a process's devices share one global model)
        expected = self._weight_shapes()
        if set(weights) != set(expected):
            return (f"weights must have exactly the keys {sorted(expected)}; missing "
                    f"{sorted(set(expected) - set(weights))}, unexpected {sorted(set(weights) - set(expected))}")
        for name, shape in expected.items():
            arr = np.asarray(weights[name])
            if arr.shape != shape:
                return f"weight {name} must have shape {shape}, got {arr.shape}"
            if not np.all(np.isfinite(arr)):
                return f"weight {name} contains NaN or inf"
        frozen = all(isinstance(a, np.ndarray) and not a.flags.writeable for a in weights.values())
        self._checked_frozen = list(weights.items()) if frozen else []
        return None

    def _unchanged_since_checked(self, weights: dict) -> bool:
        """Whether `weights` holds exactly the read-only arrays shape_mismatch last found to fit (none written)."""
        held = self._checked_frozen
        return bool(held) and len(weights) == len(held) and all(
            weights.get(name) is array and not array.flags.writeable for name, array in held)

    def _weight_inputs(self) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        """(signature input, stable name, shape) of every weight `set_weights` takes: read once, not every round."""
        if self._weight_inputs_read is None:
            details = self._runner("set_weights").get_input_details()
            self._weight_inputs_read = tuple((k, _stable_name(k), tuple(int(s) for s in d["shape"]))
                                             for k, d in details.items())
        return self._weight_inputs_read

    def _weight_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for _, name, shape in self._weight_inputs()}

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace all weights; keys must be exactly the stable names, shapes must match (else ValueError)."""
        mismatch = self.shape_mismatch(weights)
        if mismatch is not None:
            raise ValueError(mismatch)
        runner = self._runner("set_weights")
        runner(**{key: np.asarray(weights[name], dtype=np.float32) for key, name, _ in self._weight_inputs()})
