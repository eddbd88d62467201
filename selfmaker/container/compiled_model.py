"""Loading and running a compiled model: the artifact a compilation job writes (docs/compilation.md).

The model directory holds ``compiled.meta`` (JSON) and the artifact it names:
``compiled.so`` (a Treelite model compiled to native code by tl2cgen and gcc, called through
ctypes: tl2cgen's Python Predictor spent ~0.08 ms a call setting up buffers, several times what a
300-tree model takes to predict one row, and was 2x slower on 100-row batches than this loop)
or ``model.onnx`` (an ONNX graph optimized, maybe quantized, for ONNX Runtime).
The model server's compiled handlers, the compiler's accuracy check, the
benchmarks and an edge agent all load it through :class:`CompiledModel`, so
they answer alike. Only numpy (and onnxruntime for an ONNX artifact) is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

META = "compiled.meta"


class CompiledModel:
    """A compiled model, loaded; :meth:`predict` answers as the framework's own ``predict`` did."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        directory = Path(model_dir)
        self.meta = json.loads((directory / META).read_text())
        self.framework = self.meta["Framework"]
        self.backend = self.meta["Backend"]
        self.labels = self.meta.get("ClassLabels")  # a classifier answering its labels, not probabilities
        # One thread per call: a model server runs calls side by side, and a single row gains nothing from more.
        threads = threads or int(os.environ.get("SELFMAKER_COMPILED_THREADS") or 1)
        artifact = str(directory / self.meta["Artifact"])
        if self.backend == "tl2cgen":
            self._row = _RowPredictor(artifact)
        elif self.backend == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
            self._inputs = [i.name for i in self._session.get_inputs()]
        else:
            raise ValueError(f"unknown compiled backend {self.backend!r} in {META}")

    def predict(self, data):
        """``data``: one array (2-D rows for tree and scikit-learn models), or a dict name -> array."""
        import numpy as np

        if self.backend == "tl2cgen":
            rows = np.asarray(data, dtype=np.float32)
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
            out = self._row.predict(rows)
            if self.labels is not None:  # a scikit-learn classifier: its predict answers labels
                index = (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
                return np.asarray(self.labels)[index]
            return out[:, 0] if out.shape[1] == 1 else out
        feeds = data if isinstance(data, dict) else {self._inputs[0]: data}
        dtypes = {i["name"]: i.get("dtype", "float32") for i in self.meta.get("Inputs", [])}
        feeds = {name: np.asarray(value, dtype=dtypes.get(name, "float32")) for name, value in feeds.items()}
        if self.meta.get("RowInput") and next(iter(feeds.values())).ndim == 1:
            feeds = {name: value.reshape(1, -1) for name, value in feeds.items()}
        outputs = self._session.run(None, feeds)
        chosen = outputs[self.meta.get("OutputIndex", 0)]
        if self.meta.get("OutputColumn") is not None:  # XGBoost binary: P(class 1), as Booster.predict
            chosen = chosen[:, self.meta["OutputColumn"]]
        return chosen.reshape(-1) if self.meta.get("FlattenOutput") else chosen


class _RowPredictor:
    """A tl2cgen library's own ``predict(union Entry* row, int pred_margin, <leaf type>* result)``, called directly.

    ``union Entry`` is ``{int missing; <threshold type> fvalue; ...}``: 4 bytes for float32 models
    (XGBoost), 8 for float64 ones (scikit-learn); a missing value has ``missing`` (the low 4 bytes) = -1.
    ``result`` accumulates, so it is zeroed per row.
    """

    def __init__(self, path: str):
        import ctypes

        import numpy as np

        lib = ctypes.CDLL(path)
        targets = lib.get_num_target()
        classes = (ctypes.c_int32 * targets)()
        lib.get_num_class(classes)
        lib.get_threshold_type.restype = lib.get_leaf_output_type.restype = ctypes.c_char_p
        self.entry = np.dtype(lib.get_threshold_type().decode())
        self.leaf = np.dtype(lib.get_leaf_output_type().decode())
        self.width = targets * max(classes)
        self.features = lib.get_num_feature()
        self._predict = lib.predict
        self._predict.restype = None
        self._predict.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
        self._lib, self._np = lib, np  # the library stays loaded as long as this object lives

    def predict(self, rows):
        np = self._np
        if rows.shape[1] != self.features:  # absent trailing features are missing, as in a DMatrix
            wide = np.full((len(rows), self.features), np.nan, np.float32)
            width = min(self.features, rows.shape[1])
            wide[:, :width] = rows[:, :width]
            rows = wide
        entries = np.ascontiguousarray(rows, dtype=self.entry)
        missing = np.isnan(rows)
        if missing.any():
            entries = entries.copy()  # ascontiguousarray may have returned the caller's own array
            entries.view(np.int32).reshape(len(rows), self.features, -1)[missing, 0] = -1  # the int member
        out = np.zeros((len(rows), self.width), dtype=self.leaf)
        # __array_interface__, not .ctypes: the latter builds an object per access (microseconds a call).
        base, target = entries.__array_interface__["data"][0], out.__array_interface__["data"][0]
        row_bytes, out_bytes, predict = entries.strides[0], out.strides[0], self._predict
        for i in range(len(rows)):
            predict(base + i * row_bytes, 0, target + i * out_bytes)
        return out
