"""A packaged compiled model, loaded: ``compiled.meta`` names the backend and artifact (docs/compilation.md).

``model.onnx`` runs in ONNX Runtime; ``compiled.so`` (tl2cgen) through tl2cgen's
Predictor, when tl2cgen is installed on the device. Prediction follows the meta's
Inputs, OutputIndex, OutputColumn and FlattenOutput, as the model server does.
"""

from __future__ import annotations

import json
from pathlib import Path


class LoadError(Exception):
    pass


class LoadedModel:
    def __init__(self, directory: Path):
        try:
            self.meta = json.loads((directory / "compiled.meta").read_text())
            backend, artifact = self.meta["Backend"], str(directory / self.meta["Artifact"])
        except (OSError, ValueError, KeyError) as err:
            raise LoadError(f"no usable compiled.meta: {type(err).__name__}") from None
        self.backend = backend
        try:
            if backend == "onnxruntime":
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                self._session = onnxruntime.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
                self._inputs = [i.name for i in self._session.get_inputs()]
            elif backend == "tl2cgen":
                import tl2cgen

                self._predictor = tl2cgen.Predictor(artifact, nthread=1)
                self._dmatrix = tl2cgen.DMatrix
            else:
                raise LoadError(f"unknown backend {backend!r}")
        except ImportError as err:
            raise LoadError(f"the {backend} runtime is not installed on this device ({err.name})") from None
        except LoadError:
            raise
        except Exception as err:  # the runtime's own refusal of a damaged artifact
            raise LoadError(f"{backend} could not load {self.meta['Artifact']}: {str(err)[:300]}") from None

    def predict(self, data):
        import numpy as np

        if self.backend == "tl2cgen":
            rows = np.asarray(data, dtype=np.float32)
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
            out = self._predictor.predict(self._dmatrix(rows))
            out = out.reshape(out.shape[0], -1)
            return out[:, 0] if out.shape[1] == 1 else out
        feeds = data if isinstance(data, dict) else {self._inputs[0]: data}
        dtypes = {i["name"]: i.get("dtype", "float32") for i in self.meta.get("Inputs", [])}
        feeds = {name: np.asarray(value, dtype=dtypes.get(name, "float32")) for name, value in feeds.items()}
        if self.meta.get("RowInput") and next(iter(feeds.values())).ndim == 1:
            feeds = {name: value.reshape(1, -1) for name, value in feeds.items()}
        chosen = self._session.run(None, feeds)[self.meta.get("OutputIndex", 0)]
        if self.meta.get("OutputColumn") is not None:
            chosen = chosen[:, self.meta["OutputColumn"]]
        return chosen.reshape(-1) if self.meta.get("FlattenOutput") else chosen
