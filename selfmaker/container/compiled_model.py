"""Loading and running a compiled model: the artifact a compilation job writes (docs/compilation.md).

The model directory holds ``compiled.meta`` (JSON) and the artifact it names:
``compiled.so`` (a Treelite model compiled to native code by tl2cgen and gcc, called through
ctypes, one call per batch: tl2cgen's Python Predictor spent ~0.08 ms a call setting up buffers,
several times what a 300-tree model takes to predict one row)
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
            self._trees = _TreeLibrary(artifact)
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
            rows = np.ascontiguousarray(data, dtype=np.float32)
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
            out = self._trees.predict(rows)
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


class _TreeLibrary:
    """A tl2cgen library, called through ctypes.

    Libraries compiled since the batch entry was added export ``selfmaker_predict_rows`` (neo_compiler.ROWS_ENTRY):
    float32 rows in, one result row each out, in one call. Older ones (never quantized) only have tl2cgen's
    per-row ``predict(union Entry* row, int pred_margin, <leaf type>* result)``, called here row by row: ``union
    Entry`` is ``{int missing; <threshold type> fvalue}``, 4 or 8 bytes, missing when its low 4 bytes are -1.
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
        self._rows = getattr(lib, "selfmaker_predict_rows", None)
        if self._rows is not None:
            self._rows.restype = ctypes.c_int32
            self._rows.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
        self._row = lib.predict
        self._row.restype = None
        self._row.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
        self._lib, self._np = lib, np  # the library stays loaded as long as this object lives

    def predict(self, rows):
        """``rows``: 2-D float32, C-contiguous."""
        np = self._np
        out = np.empty((len(rows), self.width), dtype=self.leaf)
        # __array_interface__, not .ctypes: the latter builds an object per access (microseconds a call).
        data, target = rows.__array_interface__["data"][0], out.__array_interface__["data"][0]
        if self._rows is not None:
            if self._rows(data, len(rows), rows.shape[1], 0, target) != 0:
                raise MemoryError("the compiled model could not allocate a row")
            return out
        return self._row_by_row(rows, out)

    def _row_by_row(self, rows, out):
        np = self._np
        wide = np.full((len(rows), self.features), np.nan, np.float32)  # absent trailing features are missing
        width = min(self.features, rows.shape[1])
        wide[:, :width] = rows[:, :width]
        entries = wide.astype(self.entry)
        entries.view(np.int32).reshape(len(rows), self.features, -1)[np.isnan(wide), 0] = -1  # the int member
        out[:] = 0  # predict() accumulates
        base, target = entries.__array_interface__["data"][0], out.__array_interface__["data"][0]
        for i in range(len(rows)):
            self._row(base + i * entries.strides[0], 0, target + i * out.strides[0])
        return out
